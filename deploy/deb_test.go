package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDebianPackage builds the package with dpkg-deb (scripts/build-deb.sh,
// reusing TACLINE_BIN), installs it on this machine with dpkg -i, runs the
// installed binary, checks the user, the conffile and the unit's hardening,
// has systemd-analyze verify the unit, and purges the package again.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("installing the Debian package needs root")
		}
		t.Skip("not root: the Debian package is not installed by this run (make test as root installs it)")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatal("dpkg-deb is missing: run scripts/ensure-tools.sh")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "tacline").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("a tacline package is already installed on this machine (%s); not touching it", out)
	}
	_, userExisted := lookupUser("tacline")
	_, stateExisted := os.Stat("/var/lib/tacline")

	build := exec.Command("scripts/build-deb.sh", t.TempDir())
	build.Dir = ".."
	build.Env = append(os.Environ(), "BIN="+taclineBin(t))
	out, err := build.Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v %s", err, stderrOf(err))
	}
	deb := strings.TrimSpace(string(out))

	t.Cleanup(func() {
		if out, err := dpkg("--purge", "tacline"); err != nil {
			t.Errorf("dpkg --purge tacline: %v\n%s", err, out)
		}
		if !userExisted {
			exec.Command("userdel", "tacline").Run()
			exec.Command("groupdel", "tacline").Run()
		}
		if errors.Is(stateExisted, os.ErrNotExist) {
			os.RemoveAll("/var/lib/tacline")
		}
	})
	if out, err := dpkg("-i", deb); err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", filepath.Base(deb), err, out)
	}

	run := func(args ...string) (string, error) {
		out, err := exec.Command("/usr/bin/tacline", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("--version"); err != nil || !strings.HasPrefix(out, "tacline version ") {
		t.Fatalf("installed tacline --version: %v %q", err, out)
	}
	if out, err := run("config", "check", "--config", "/etc/tacline/tacline.yaml"); err != nil || !strings.Contains(out, "valid") {
		t.Fatalf("installed tacline config check: %v %q", err, out)
	}
	// The unit's ExecStartPre refuses to start before the TLS files exist.
	if out, err := run("config", "check", "--files", "--config", "/etc/tacline/tacline.yaml"); err == nil || !strings.Contains(out, "server.tls_cert") {
		t.Fatalf("config check --files on the fresh install: %v %q", err, out)
	}
	if u, ok := lookupUser("tacline"); !ok || !strings.HasSuffix(u, ":/usr/sbin/nologin") {
		t.Fatalf("tacline system user: %q", u)
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", "tacline").Output(); err != nil || !strings.Contains(string(out), "/etc/tacline/tacline.yaml") {
		t.Fatalf("conffiles: %v %q", err, out)
	}
	for _, dir := range []string{"/var/lib/tacline/ledger", "/var/lib/tacline/token"} {
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o750 {
			t.Fatalf("%s: %v %v", dir, st, err)
		}
	}
	unit, err := os.ReadFile("/lib/systemd/system/tacline.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=tacline", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=/var/lib/tacline/ledger /var/lib/tacline/token", "PrivateTmp=yes", "CapabilityBoundingSet=\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if sa, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Logf("systemd-analyze is not installed: the unit is not verified by systemd (the directives above are)")
	} else {
		out, err := exec.Command(sa, "verify", "/lib/systemd/system/tacline.service").CombinedOutput()
		// verify exits 0 on unknown directives but prints them: any output fails.
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}

// dpkg runs dpkg, waiting for the lock when another installation holds it.
func dpkg(args ...string) (string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := exec.Command("dpkg", args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock") || time.Now().After(deadline) {
			return string(out), err
		}
		time.Sleep(2 * time.Second)
	}
}

func lookupUser(name string) (string, bool) {
	out, err := exec.Command("getent", "passwd", name).Output()
	return strings.TrimSpace(string(out)), err == nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
