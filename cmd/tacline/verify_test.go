package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/provisioner"
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
		srv, url, stop, err := devenv.ServeInProcess(ctx, env)
		ts.Check(err)
		devs, err := devenv.ProvisionDevices(ctx, env, url, 3, filepath.Join(dir, "keys"))
		ts.Check(err)
		for i, name := range []string{"a", "b", "r"} {
			d := devs[i]
			ts.Check(os.WriteFile(filepath.Join(dir, "dev-"+name+".pem"), []byte(d.ChainPEM), 0o644))
			key, err := x509.MarshalPKCS8PrivateKey(d.Key)
			ts.Check(err)
			ts.Check(os.WriteFile(filepath.Join(dir, "dev-"+name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600))
			ts.Setenv("IMEI_"+strings.ToUpper(name), d.IMEIs[0])
		}
		ts.Check(srv.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provisioner.Actor{ID: "script", Roles: []provisioner.Role{provisioner.RoleOperator}, Scope: provisioner.ScopeAll},
			DeviceSerial: devs[2].Serial, Reason: "stolen"}))
		chain, err := os.ReadFile(filepath.Join(env.ExportsDir, "ca-chain.pem"))
		ts.Check(err)
		certs, err := verify.ParseChainPEM(chain)
		ts.Check(err)
		ts.Setenv("ISSUER", ca.KeyID(certs[0]))
		ts.Check(stop())
	}
}
