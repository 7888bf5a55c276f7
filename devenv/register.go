package devenv

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// StartRegisterSim runs `bin register-sim` on a free loopback port with its
// own SQLite file and returns it with its base URL once it listens.
func StartRegisterSim(ctx context.Context, bin, dbPath, logPath string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "register-sim", "--listen", "127.0.0.1:0", "--db", dbPath)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "start %s register-sim", bin)
	}
	p := &Proc{Cmd: cmd, LogPath: logPath, done: make(chan error, 1)}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			logf.WriteString(line + "\n")
			if i := strings.Index(line, "listening on "); i >= 0 {
				select {
				case urlc <- strings.TrimSpace(line[i+len("listening on "):]):
				default:
				}
			}
		}
		p.done <- cmd.Wait()
		logf.Close()
	}()
	select {
	case u := <-urlc:
		p.URL = u
		p.Addr = strings.TrimPrefix(u, "http://")
		return p, nil
	case <-time.After(30 * time.Second):
		p.Kill()
		return nil, tacerr.New(tacerr.Unavailable, "register-sim did not start; see %s", logPath)
	case <-ctx.Done():
		p.Kill()
		return nil, ctx.Err()
	}
}

// SetRegisterURL points the environment's configuration at a register and
// reloads it.
func (e *Env) SetRegisterURL(url string) error {
	b, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		return err
	}
	b = append(b, []byte("register:\n  url: "+url+"\n  batch_age: 200ms\n")...)
	if err := os.WriteFile(e.ConfigPath, b, 0o644); err != nil {
		return err
	}
	cfg, err := config.Load(e.ConfigPath)
	if err != nil {
		return err
	}
	e.Config = cfg
	return nil
}

// WaitDelivered waits until the register outbox holds no open event, or the
// timeout passes, and returns the last report.
func WaitDelivered(ctx context.Context, db *store.DB, timeout time.Duration) (register.Report, error) {
	deadline := time.Now().Add(timeout)
	for {
		rep, err := register.Status(ctx, db)
		if err != nil || rep.Pending == 0 || time.Now().After(deadline) {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
