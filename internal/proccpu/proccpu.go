// Package proccpu reads a process's CPU time and start time from /proc
// (Linux): the benchmarks' measure of tacline's servers and of
// PostgreSQL's backends, and pgadmin's test of whether a scratch
// database's creator still runs.
package proccpu

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Of returns a process's user+system CPU time from /proc/PID/stat.
func Of(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// Start returns when a process started, in clock ticks after boot (field
// 22 of /proc/PID/stat): with its pid, what tells it from a later process
// given the same pid.
func Start(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// statFields returns /proc/PID/stat's fields from the third on (after the
// parenthesised command name, which may hold spaces): f[0] is field 3.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("unreadable /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return nil, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return f, nil
}
