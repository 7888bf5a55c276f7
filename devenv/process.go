package devenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// Proc is a tacline server running as a child process.
type Proc struct {
	Cmd     *exec.Cmd
	URL     string // https://127.0.0.1:PORT
	Addr    string
	LogPath string
	done    chan error
}

// StartServer runs `bin serve --config cfg` on a free loopback port and
// waits until it accepts connections. Its output goes to logPath.
func StartServer(ctx context.Context, bin, cfgPath, logPath string, extraArgs ...string) (*Proc, error) {
	return StartServerEnv(ctx, bin, cfgPath, logPath, nil, extraArgs...)
}

// StartServerEnv is StartServer with env (KEY=value) added to the
// server's environment (this process's own, inherited).
func StartServerEnv(ctx context.Context, bin, cfgPath, logPath string, env []string, extraArgs ...string) (*Proc, error) {
	ready := filepath.Join(filepath.Dir(logPath), fmt.Sprintf("ready-%d", time.Now().UnixNano()))
	os.Remove(ready)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--config", cfgPath, "--listen", "127.0.0.1:0", "--ready-file", ready}, extraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a Ctrl-C on the terminal reaches the parent,
	// which stops the server in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "start %s serve", bin)
	}
	p := &Proc{Cmd: cmd, LogPath: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && strings.TrimSpace(string(b)) != "" {
			p.Addr = strings.TrimSpace(string(b))
			p.URL = "https://" + p.Addr
			os.Remove(ready)
			return p, nil
		}
		select {
		case err := <-p.done:
			p.done <- err
			return nil, tacerr.New(tacerr.Unavailable, "tacline serve exited before it was ready (%v); see %s", err, logPath)
		case <-ctx.Done():
			p.Kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, tacerr.New(tacerr.Unavailable, "tacline serve not ready after 60s; see %s", logPath)
		}
	}
}

// Stop asks the server to shut down (SIGTERM) and waits for it; after the
// grace period it is killed.
func (p *Proc) Stop(grace time.Duration) error {
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(grace):
		p.Kill()
		return tacerr.New(tacerr.Unavailable, "server did not stop within %s; killed", grace)
	}
}

// Kill ends the server at once (SIGKILL), as a crash would.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
	p.done <- nil
}

// Wait returns when the process has exited.
func (p *Proc) Wait() error {
	err := <-p.done
	p.done <- err
	return err
}

// CommandName is how a user in the current directory runs the tacline
// binary bin, for the hints a demo prints: "tacline" when that name on
// PATH is bin, bin's path relative to the current directory when it is
// under it (bin/tacline after `make demo`), bin itself otherwise.
func CommandName(bin string) string {
	if bin == "" {
		return "tacline"
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return bin
	}
	if p, err := exec.LookPath("tacline"); err == nil {
		if pa, err := filepath.Abs(p); err == nil && pa == abs {
			return "tacline"
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, abs); err == nil && filepath.IsLocal(rel) {
			if !strings.ContainsRune(rel, filepath.Separator) {
				return "." + string(filepath.Separator) + rel
			}
			return rel
		}
	}
	return abs
}
