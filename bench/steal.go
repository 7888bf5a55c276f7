package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// hostCPU is the machine's CPU time from /proc/stat's first line, in
// clock ticks: all of it, and the part the hypervisor ran other guests on
// this guest's virtual CPUs (steal). On a shared virtual machine steal is
// what makes two runs of the same binary a minute apart differ: recorded
// with each run, it says how much of the machine the run did not have.
type hostCPU struct {
	steal, total uint64
	ok           bool
}

// readHostCPU reads /proc/stat; ok is false where there is none (not
// Linux) or it does not parse.
func readHostCPU() hostCPU {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return hostCPU{}
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	if !s.Scan() {
		return hostCPU{}
	}
	return parseHostCPU(s.Text())
}

// parseHostCPU parses /proc/stat's "cpu" line: user nice system idle
// iowait irq softirq steal [guest guest_nice]. guest and guest_nice are
// already counted in user and nice, so they are not added again.
func parseHostCPU(line string) hostCPU {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return hostCPU{}
	}
	var h hostCPU
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return hostCPU{}
		}
		h.total += v
		if i == 7 {
			h.steal = v
		}
	}
	h.ok = true
	return h
}

// stealShare is the share of the machine's CPU time from a to b that was
// stolen (0 when either reading failed or no time passed).
func stealShare(a, b hostCPU) float64 {
	if !a.ok || !b.ok || b.total <= a.total || b.steal < a.steal {
		return 0
	}
	return float64(b.steal-a.steal) / float64(b.total-a.total)
}
