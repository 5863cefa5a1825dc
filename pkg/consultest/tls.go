package consultest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSFiles are a throw-away CA and a server certificate for a test agent.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
	// ServerName is the name in the server certificate (also valid: localhost, 127.0.0.1).
	ServerName string
}

// MakeTLS writes a throw-away CA and a server certificate for
// server.<datacenter>.consul into dir (tests use a second one as a CA that
// did not sign an agent's certificate).
func MakeTLS(dir, datacenter string) (*TLSFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	name := "server." + datacenter + ".consul"
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{name, "localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	f := &TLSFiles{
		CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"),
		KeyFile: filepath.Join(dir, "server-key.pem"), ServerName: name,
	}
	for path, block := range map[string]*pem.Block{
		f.CAFile:   {Type: "CERTIFICATE", Bytes: caDER},
		f.CertFile: {Type: "CERTIFICATE", Bytes: der},
		f.KeyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// StartSecureT starts an agent of the test's own (StartT) named node, with
// default-deny ACLs whose management token is token and HTTPS with its own
// CA (Options.ACLToken and Options.TLS), and writes token and a newline to
// a file of mode 0600 in a new t.TempDir(), for the programs' -token-file.
// It returns the agent and that file's path.
func StartSecureT(t testing.TB, node, token string) (*Agent, string) {
	t.Helper()
	a := StartT(t, Options{NodeName: node, ACLToken: token, TLS: true})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return a, tokenFile
}

// TLSFlags are the flags that make a berth program trust a's HTTPS API:
// -ca-file with a's CA and -tls-server-name; nil when a has no TLS.
func (a *Agent) TLSFlags() []string {
	if a.TLS == nil {
		return nil
	}
	return []string{"-ca-file", a.TLS.CAFile, "-tls-server-name", a.TLS.ServerName}
}
