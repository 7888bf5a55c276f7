package storetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Environment of a SmallFS child: the directory to mount the tmpfs on and
// its size in bytes.
const (
	smallFSDirEnv  = "TACLINE_SMALLFS_DIR"
	smallFSSizeEnv = "TACLINE_SMALLFS_SIZE"
)

// SmallFS runs the test name of this test binary again in a child process
// with a filesystem that really fills up: a tmpfs of size bytes mounted on
// a new directory, in a mount namespace of the child's own (nothing else on
// the machine sees the mount, and it goes when the child ends). The child
// gets a user namespace too where the kernel lets users make them (no root
// needed); where it does not (unprivileged user namespaces turned off, as
// some distributions and containers do), a process running as root gets
// the mount namespace alone. env is added to the child's environment. The
// child calls SmallFSDir to mount and find the directory. A child that
// fails or does not run fails t, as does a machine that allows neither
// way; its output is returned.
func SmallFS(t *testing.T, name string, size int64, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	attrs := []*syscall.SysProcAttr{{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}}
	if os.Getuid() == 0 {
		attrs = append(attrs, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS})
	}
	var starts []string
	for _, attr := range attrs {
		cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
		cmd.Env = append(append(os.Environ(), smallFSDirEnv+"="+dir, smallFSSizeEnv+"="+strconv.FormatInt(size, 10)), env...)
		cmd.SysProcAttr = attr
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			t.Fatalf("%s in a %d-byte tmpfs: %v\n%s", name, size, err, out)
		case err != nil:
			starts = append(starts, err.Error())
			continue
		}
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Fatalf("%s did not run in the child:\n%s", name, out)
		}
		return string(out)
	}
	t.Fatalf("start %s in a mount namespace of its own (the test needs one: `unshare -Urm true` must work, or the tests must run as root): %s", name, strings.Join(starts, "; "))
	return ""
}

// SmallFSDir mounts, in a child of SmallFS, its tmpfs and returns the
// directory; outside one it skips t (the test runs only as a child).
func SmallFSDir(t *testing.T) string {
	t.Helper()
	dir, size := os.Getenv(smallFSDirEnv), os.Getenv(smallFSSizeEnv)
	if dir == "" {
		t.Skip("runs in a child process of a test that gives it a small filesystem (storetest.SmallFS)")
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make the child's mounts private: %v", err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%s,mode=0700", size)); err != nil {
		t.Fatalf("mount a %s-byte tmpfs on %s: %v", size, dir, err)
	}
	return dir
}
