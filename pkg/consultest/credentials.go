package consultest

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
)

// SecureAgent is an agent with default-deny ACLs and HTTPS with its own CA
// (StartSecure), and the management token a berth program needs to read it.
type SecureAgent struct {
	*Agent
	// Token is the ACL management token, a fresh UUID.
	Token string
	// TokenFile holds Token and a newline (mode 0600), for -token-file and
	// CONSUL_HTTP_TOKEN_FILE.
	TokenFile string
}

// StartSecure starts an agent of the test's own (StartSecureT) named node
// whose management token is a fresh random UUID. A test the agent cannot
// start for is skipped (StartT).
func StartSecure(t testing.TB, node string) *SecureAgent {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	token := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	a, tokenFile := StartSecureT(t, node, token)
	return &SecureAgent{Agent: a, Token: token, TokenFile: tokenFile}
}

// Credential is one way of giving a berth program the agent's ACL token and
// TLS settings (its CA and server name). Args go before the program's own
// arguments; Env holds KEY=VALUE entries to add to its environment. Neither
// gives the address: each program has its own way of naming it.
type Credential struct {
	Name string
	Args []string
	Env  []string
}

// Credentials are the ways every berth program takes the token and the TLS
// settings, by the shared Consul flags (pkg/consulclient) or by the
// variables api.DefaultConfig reads, in this order:
//   - "-token-file": -token-file with -ca-file and -tls-server-name;
//   - "-token": -token with the same TLS flags;
//   - "environment": CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT and
//     CONSUL_TLS_SERVER_NAME.
func (s *SecureAgent) Credentials() []Credential {
	return []Credential{
		{Name: "-token-file", Args: append(s.TLSFlags(), "-token-file", s.TokenFile)},
		{Name: "-token", Args: append(s.TLSFlags(), "-token", s.Token)},
		{Name: "environment", Env: []string{"CONSUL_HTTP_TOKEN_FILE=" + s.TokenFile, "CONSUL_CACERT=" + s.TLS.CAFile,
			"CONSUL_TLS_SERVER_NAME=" + s.TLS.ServerName}},
	}
}

// NoToken is the TLS flags alone: the agent answers over HTTPS, and its
// default-deny ACLs hide every key, service and node.
func (s *SecureAgent) NoToken() Credential {
	return Credential{Name: "no token", Args: s.TLSFlags()}
}

// RequireNoToken fails the test when output (what the program named by who
// printed or logged) contains the token: a program must never show it.
func (s *SecureAgent) RequireNoToken(t testing.TB, who, output string) {
	t.Helper()
	if strings.Contains(output, s.Token) {
		t.Fatalf("the ACL token appears in %s:\n%s", who, output)
	}
}
