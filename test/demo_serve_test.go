package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoServe runs `tacline demo --serve`, opens the staff console it
// prints with the operator identity it prints, interrupts it (SIGINT, as
// Ctrl-C does) and checks that it then stops the server and checks the
// ledger.
func TestDemoServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, taclineBin, "demo", "--serve", "--dir", dir, "--stations", "1", "--devices", "3")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var consoleURL, certFile, all string
	for consoleURL == "" || certFile == "" {
		if !sc.Scan() {
			t.Fatalf("tacline demo --serve ended before it printed the console's address:\n%s\nstderr:\n%s", all, stderr.String())
		}
		line := sc.Text()
		all += line + "\n"
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "  staff console") && len(f) == 3:
			consoleURL = f[2]
		case strings.HasPrefix(line, "  operator identity") && len(f) == 4:
			certFile = strings.TrimSuffix(f[2], ",")
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, filepath.Join(filepath.Dir(certFile), "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "stations", "server-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	resp, err := c.Get(consoleURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<h1>Overview</h1>") {
		t.Fatalf("GET %s as the operator: %s\n%.500s", consoleURL, resp.Status, body)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tacline demo --serve after SIGINT: %v\nstdout:\n%s%s\nstderr:\n%s", err, all, rest, stderr.String())
	}
	if !strings.Contains(string(rest), "ledger check: OK") {
		t.Fatalf("after SIGINT the demo did not stop the server and check the ledger:\n%s", rest)
	}
}
