package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/verify"
)

// authenv DIR makes a real environment in DIR for the authenticity
// scripts: devenv (SoftHSM2 token, SQLite ledger, key ceremony), a server
// running in this process while the line simulator provisions three
// devices, and the third device revoked (reason stolen) before the server
// stops. It writes DIR/dev-{a,b,r}.pem (device certificate then the CA
// chain) and DIR/dev-{a,b,r}.key, and sets $IMEI_A, $IMEI_B, $IMEI_R and
// $ISSUER (the device issuer's key id).
func init() {
	scriptCmds["authenv"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 1 {
			ts.Fatalf("usage: authenv DIR")
		}
		dir := ts.MkAbs(args[0])
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		env, err := devenv.Setup(ctx, devenv.Options{Dir: dir, Stations: 1})
		ts.Check(err)
		cfg := env.Config
		cfg.Server.Listen = "127.0.0.1:0"
		srv, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
		ts.Check(err)
		addrc, done := make(chan string, 1), make(chan error, 1)
		go func() { done <- srv.Run(ctx, func(a string) { addrc <- a }) }()
		var addr string
		select {
		case addr = <-addrc:
		case err := <-done:
			ts.Fatalf("server: %v", err)
		}
		creds, err := factory.LoadCreds(env.CredsDir, 0)
		ts.Check(err)
		var out bytes.Buffer
		keys := filepath.Join(dir, "keys")
		_, err = factory.Simulate(ctx, factory.SimConfig{ServerURL: "https://" + addr, ServerCAFile: creds.ServerCAFile, RootsFile: creds.RootsFile,
			Stations: creds.Stations, DevicesPerStation: 3, DevicesOut: &out, KeysDir: keys})
		ts.Check(err)
		chain, err := os.ReadFile(filepath.Join(env.ExportsDir, "ca-chain.pem"))
		ts.Check(err)
		sc := bufio.NewScanner(&out)
		for _, name := range []string{"a", "b", "r"} {
			if !sc.Scan() {
				ts.Fatalf("the simulator listed fewer than 3 devices")
			}
			var rec factory.DeviceRecord
			ts.Check(json.Unmarshal(sc.Bytes(), &rec))
			ts.Check(os.WriteFile(filepath.Join(dir, "dev-"+name+".pem"), append([]byte(rec.Certificate), chain...), 0o644))
			key, err := os.ReadFile(filepath.Join(keys, rec.DeviceSerial+".pem"))
			ts.Check(err)
			ts.Check(os.WriteFile(filepath.Join(dir, "dev-"+name+".key"), key, 0o600))
			ts.Setenv("IMEI_"+strings.ToUpper(name), rec.IMEIs[0])
			if name == "r" {
				ts.Check(srv.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provisioner.Actor{ID: "script", Roles: []provisioner.Role{provisioner.RoleOperator}},
					DeviceSerial: rec.DeviceSerial, Reason: "stolen"}))
			}
		}
		certs, err := verify.ParseChainPEM(chain)
		ts.Check(err)
		ts.Setenv("ISSUER", ca.KeyID(certs[0]))
		cancel()
		ts.Check(<-done)
		ts.Check(srv.Close())
	}
}
