package devenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/stepca/stepcadev"
)

// RAKeyLabel is the label of the development RA key (issuer kind stepca).
const RAKeyLabel = "tacline-ra"

// StepCAProvisioner is the development step-ca provisioner's name.
const StepCAProvisioner = "tacline-devices"

// UseStepCA starts a development step-ca for the environment (Dir/stepca:
// its intermediate key in the environment's SoftHSM2 token through step-ca's
// PKCS#11 KMS, the provisioner for tacline's RA key, made in the same token)
// and switches the environment to issuer kind stepca: the configuration
// file gets the issuer and stepca sections, and exports/ca-chain.pem and
// the stations' chain hold step-ca's chain. bin is the step-ca executable.
// extra are more provisioners for step-ca. The caller stops the returned
// CA.
func (e *Env) UseStepCA(ctx context.Context, bin string, extra ...any) (*stepcadev.CA, error) {
	tok, err := openToken(e.Config.HSM)
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	if _, err := tok.GenerateKey(RAKeyLabel, hsm.ECP256); err != nil {
		return nil, err
	}
	raKey, err := tok.Signer(RAKeyLabel)
	if err != nil {
		return nil, err
	}
	prov, err := stepca.DeviceProvisioner(StepCAProvisioner, raKey.Public(), "")
	if err != nil {
		return nil, err
	}
	c, err := stepcadev.Start(ctx, stepcadev.Options{Dir: filepath.Join(e.Dir, "stepca"), Binary: bin, HSM: e.Config.HSM, Token: tok.Token, Provisioners: append([]any{prov}, extra...)})
	if err != nil {
		return nil, err
	}
	sc := stepca.Config{URL: c.URL, Root: c.RootFile, IssuerCert: c.IssuerFile, Provisioner: StepCAProvisioner, KeyLabel: RAKeyLabel}
	fail := func(err error) (*stepcadev.CA, error) {
		c.Stop()
		return nil, err
	}
	if err := e.setSections(map[string]any{
		"issuer": map[string]any{"kind": config.IssuerStepCA},
		"stepca": map[string]any{"url": sc.URL, "root": sc.Root, "issuer_cert": sc.IssuerCert, "provisioner": sc.Provisioner, "key_label": sc.KeyLabel},
	}); err != nil {
		return fail(err)
	}
	e.Config.Issuer.Kind, e.Config.StepCA = config.IssuerStepCA, sc
	chain := ca.ChainPEM(c.Issuer, c.Root)
	for _, p := range []string{filepath.Join(e.ExportsDir, "ca-chain.pem"), filepath.Join(e.CredsDir, castore.ChainFile)} {
		if err := os.WriteFile(p, chain, 0o644); err != nil {
			return fail(err)
		}
	}
	return c, nil
}

// StepCABinary finds step-ca for the demo and benchmarks: next to the
// tacline executable (bin/), else through stepcadev.Binary from the
// working directory.
func StepCABinary(taclineBin string) (string, error) {
	if taclineBin != "" {
		p := filepath.Join(filepath.Dir(taclineBin), "step-ca")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return stepcadev.Binary(wd, func(string, ...any) {})
}

// setSections replaces top-level sections of the configuration file.
func (e *Env) setSections(sections map[string]any) error {
	data, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", e.ConfigPath, err)
	}
	for k, v := range sections {
		doc[k] = v
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(e.ConfigPath, out, 0o644)
}
