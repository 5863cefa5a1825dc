package main

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/miekg/dns"
)

// hostsTestFile holds what dnsmasq's hosts reader meets: comments, several
// addresses and both families for one name, aliases, letter case, an
// address on several lines, duplicates, bad lines, a name in the Consul
// domain.
const hostsTestFile = `# a comment
10.1.0.1   multi.test alias1.test Alias2.Test  # a trailing comment
10.1.0.2   multi.test
fd00::1    multi.test
10.1.0.3   v4only.test
fd00::3    v6only.test
10.1.0.4   first.test
10.1.0.4   second.test
10.1.0.5   MixedCase.Test
10.1.0.6   dup.test
10.1.0.6   dup.test
this is bad
300.1.1.1  badaddr.test
fe80::1%eth0 zone.test
10.1.0.7
10.1.0.8	tab.test	dot.test.
10.1.0.9   hosts.consul
10.1.0.10  shortname
10.1.0.11  nxup.test
`

// hostsUpstream answers every question with a record that tells it was
// forwarded (TTL 60): NXDOMAIN for SRV and names starting "nx".
func hostsUpstream(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	m := recursiveReply(r)
	q := r.Question[0]
	if q.Qtype == dns.TypeSRV || strings.HasPrefix(strings.ToLower(q.Name), "nx") {
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, mustRR("test. 60 IN SOA ns.test. h.test. 1 3600 600 86400 30"))
		return m
	}
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 192.0.2.99"))
	case dns.TypeAAAA:
		m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN AAAA 2001:db8::99"))
	case dns.TypeMX:
		m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN MX 10 mail.example."))
	case dns.TypeTXT:
		m.Answer = append(m.Answer, mustRR(q.Name+` 60 IN TXT "upstream"`))
	case dns.TypePTR:
		m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN PTR up.example."))
	}
	if q.Qclass != dns.ClassINET {
		m.Answer = nil // forwarded: NOERROR, no records
	}
	return m
}

// hostsPair runs dnsmasq and dnsforward on the same hosts file (and
// -no-hosts: the machine's /etc/hosts plays no part) and upstream, dnsmasq
// with server=/consul/ to the Consul agent's DNS, as dnsforward is put in
// front of it; it returns their addresses and processes.
func hostsPair(t *testing.T, file string, more ...string) (dfAddr, dmAddr string, df, dm *proctest.Proc) {
	t.Helper()
	a := consultest.Require(t, agent)
	up := startUpstream(t, hostsUpstream)
	dmArgs := []string{"--addn-hosts=" + file}
	dfArgs := []string{"-no-hosts", "-addn-hosts", file}
	for _, m := range more {
		dmArgs = append(dmArgs, "--"+m)
		k, v, hasValue := strings.Cut(m, "=")
		if !hasValue { // a boolean flag
			dfArgs = append(dfArgs, "-"+k)
			continue
		}
		if k == "local-ttl" {
			v += "s" // seconds for dnsmasq, a duration for dnsforward
		}
		dfArgs = append(dfArgs, "-"+k, v)
	}
	h, p, _ := strings.Cut(a.DNSAddr(), ":")
	dmArgs = append(dmArgs, "--server=/consul/"+h+"#"+p)
	dmAddr, dm = startDnsmasqArgs(t, func(addr string) bool {
		_, err := ask(addr, "ready.example.", dns.TypeA, "udp")
		return err == nil
	}, dmArgs, up.addr)
	dfAddr = proctest.FreeAddr(t)
	cmd := exec.Command(os.Args[0], append([]string{"-listen", dfAddr, "-http-addr", a.HTTPAddr(), "-consul-dns", a.DNSAddr(), "-upstream", up.addr}, dfArgs...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	df = proctest.Start(t, cmd, proctest.Options{Combined: true})
	eventually.True(t, 15*time.Second, "dnsforward answering", func() bool {
		return strings.Contains(df.Stdout.String(), "answering DNS")
	})
	return dfAddr, dmAddr, df, dm
}

// compareDnsmasq asks each "name TYPE" case of both with dig and compares
// status, flags and every section's records (TTLs too).
func compareDnsmasq(t *testing.T, dfAddr, dmAddr string, cases []string) {
	t.Helper()
	for _, c := range cases {
		f := strings.Fields(c)
		got, want := dig(t, dfAddr, f...), dig(t, dmAddr, f...)
		if got.status != want.status || got.flags != want.flags {
			t.Errorf("%s: %s, flags %q; dnsmasq %s, %q", c, got.status, got.flags, want.status, want.flags)
		}
		for _, s := range []struct {
			name      string
			got, want []string
		}{{"answer", got.answer, want.answer}, {"authority", got.auth, want.auth}, {"additional", got.extra, want.extra}} {
			if g, w := set(s.got), set(s.want); !reflect.DeepEqual(g, w) || len(s.got) != len(s.want) {
				t.Errorf("%s: %s\n%s\ndnsmasq:\n%s", c, s.name, strings.Join(s.got, "\n"), strings.Join(s.want, "\n"))
			}
		}
	}
}

// TestHostsFileAsDnsmasq: names and addresses of a hosts file are answered
// as dnsmasq 2.90 answers them, run here on the same file and upstream:
// A, AAAA and ANY of a name from the file (AA, TTL -local-ttl, every
// address, the question's letter case), PTR of an address (the first name
// of its first line, lower case); the other family, other types and other
// classes forwarded; a name in the Consul domain from the file (dnsmasq's
// hosts come before its server=/consul/).
func TestHostsFileAsDnsmasq(t *testing.T) {
	requireDig(t)
	file := filepath.Join(t.TempDir(), "hosts")
	must(t, os.WriteFile(file, []byte(hostsTestFile), 0o644))
	cases := []string{
		"multi.test A", "multi.test AAAA", "multi.test ANY", "alias1.test A", "alias2.test A", "ALIAS2.test A",
		"Multi.Test AAAA", "mixedcase.test A", "MIXEDCASE.TEST A",
		"v4only.test AAAA", "v6only.test A", "v6only.test AAAA", "v4only.test ANY",
		"v4only.test MX", "v4only.test TXT", "multi.test SRV", "multi.test.other A", "nxup.test TXT", "nxup.test AAAA", "nxother.test A",
		"alias1.test SRV", "1.0.1.10.in-addr.arpa SRV",
		"first.test A", "second.test A", "dup.test A", "tab.test A", "dot.test A", "shortname A",
		"badaddr.test A", "zone.test AAAA", "hosts.consul A", "hosts.consul TXT",
		"-x 10.1.0.1", "-x 10.1.0.2", "-x fd00::1", "-x 10.1.0.4", "-x 10.1.0.5", "-x 10.1.0.99",
		"1.0.1.10.in-addr.arpa ANY", "1.0.1.10.in-addr.arpa TXT", "1.0.1.10.IN-ADDR.ARPA PTR",
		"-c CH multi.test A", "+tcp multi.test A", "+noedns multi.test A",
	}
	for _, ttl := range []string{"", "7"} {
		t.Run("local-ttl="+ttl, func(t *testing.T) {
			var more []string
			if ttl != "" {
				more = append(more, "local-ttl="+ttl)
			}
			dfAddr, dmAddr, _, _ := hostsPair(t, file, more...)
			compareDnsmasq(t, dfAddr, dmAddr, cases)
		})
	}
}

// TestHostsFileReloadAsDnsmasq: SIGHUP reads the hosts files again, as
// dnsmasq does, a file that was missing at start too; an address in two
// files has the PTR dnsmasq gives it.
func TestHostsFileReloadAsDnsmasq(t *testing.T) {
	requireDig(t)
	dir := t.TempDir()
	file, later := filepath.Join(dir, "hosts"), filepath.Join(dir, "later")
	must(t, os.WriteFile(file, []byte("10.7.0.1 old.test\n10.7.0.2 gone.test\n"), 0o644))
	dfAddr, dmAddr, df, dm := hostsPair(t, file, "addn-hosts="+later)
	cases := []string{"old.test A", "gone.test A", "new.test A", "inhosts.test A", "-x 10.7.0.1", "-x 10.7.0.3", "-x 10.7.0.9"}
	compareDnsmasq(t, dfAddr, dmAddr, cases)
	if !strings.Contains(df.Stdout.String(), later) {
		t.Errorf("dnsforward's log does not name the missing %s:\n%s", later, df.Stdout.String())
	}
	// 10.7.0.3 in both files: its PTR is the name in the file read first
	// (dnsmasq reads the -addn-hosts given last first).
	must(t, os.WriteFile(file, []byte("10.7.0.9 old.test\n10.7.0.3 inhosts.test\n"), 0o644))
	must(t, os.WriteFile(later, []byte("10.7.0.3 new.test\n"), 0o644))
	for _, p := range []*proctest.Proc{df, dm} {
		must(t, p.Cmd.Process.Signal(syscall.SIGHUP))
	}
	eventually.True(t, 10*time.Second, "both to read the files again", func() bool {
		return strings.Count(dm.Stderr.String(), "read "+later) == 1 && strings.Contains(df.Stdout.String(), "SIGHUP")
	})
	eventually.Holds(t, 10*time.Second, "dnsforward's new answer", func() (bool, string) {
		r := exchange(t, dfAddr, "new.test.", dns.TypeA, "udp")
		return len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "10.7.0.3", r.String()
	})
	compareDnsmasq(t, dfAddr, dmAddr, cases)
}

// TestHostsFileBadLines: a line dnsmasq skips is skipped, and logged with
// the file and line; the good lines are answered.
func TestHostsFileBadLines(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hosts")
	must(t, os.WriteFile(file, []byte(hostsTestFile), 0o644))
	var logs eventually.Buffer
	cfg := upstreamConfig(t, startUpstream(t, hostsUpstream).addr)
	cfg.HostsFiles = []string{file}
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	_, addr := startServer(t, cfg)
	for _, want := range []string{"line=12 address=this", "line=13 address=300.1.1.1", "line=14 address=fe80::1%eth0"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not name %q:\n%s", want, logs.String())
		}
	}
	if r := exchange(t, addr, "multi.test.", dns.TypeA, "udp"); len(r.Answer) != 2 || !r.Authoritative {
		t.Errorf("multi.test A: %v", r)
	}
}

// TestHostsFilesOrderAsDnsmasq: an address in several -addn-hosts files
// and directories has the PTR dnsmasq gives it (it reads the files given
// last first, then the directories' files); a directory's dot files,
// "name~" and "#name#" files and subdirectories are left out, as by
// dnsmasq.
func TestHostsFilesOrderAsDnsmasq(t *testing.T) {
	requireDig(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	write("d1/a", "10.8.0.1 d1a.test\n")
	write("d1/b", "10.8.0.1 d1b.test\n10.8.0.2 d1b.test\n")
	write("d2/x", "10.8.0.1 d2.test\n10.8.0.2 d2.test\n10.8.0.3 d2.test\n10.8.0.5 d2.test\n")
	// Left out by dnsmasq, as in a -hostsdir directory.
	write("d2/.dot", "10.8.1.1 dot.test\n")
	write("d2/backup~", "10.8.1.2 tilde.test\n")
	write("d2/#autosave#", "10.8.1.3 emacs.test\n")
	write("d2/sub/f", "10.8.1.4 sub.test\n")
	f1 := write("f1", "10.8.0.1 f1.test\n10.8.0.4 f1.test\n10.8.0.5 f1.test\n")
	f2 := write("f2", "10.8.0.1 f2.test\n")
	dfAddr, dmAddr, _, _ := hostsPair(t, filepath.Join(dir, "d1"), "addn-hosts="+f1, "addn-hosts="+filepath.Join(dir, "d2"), "addn-hosts="+f2)
	compareDnsmasq(t, dfAddr, dmAddr, []string{"-x 10.8.0.1", "-x 10.8.0.2", "-x 10.8.0.3", "-x 10.8.0.4", "-x 10.8.0.5",
		"d1a.test A", "d1b.test A", "d2.test A", "f1.test A", "f2.test A",
		"dot.test A", "tilde.test A", "emacs.test A", "sub.test A", "-x 10.8.1.1"})
}

// TestHostsDirAsDnsmasq: the files of a -hostsdir directory are answered
// as dnsmasq 2.90 answers those of its --hostsdir, run here on the same
// directory: read at start after the other hosts files (the PTR of an
// address in both is the other file's name), dot files, "name~" and
// "#name#" left out, as are subdirectories; a file created, rewritten,
// moved in or removed is followed without SIGHUP.
func TestHostsDirAsDnsmasq(t *testing.T) {
	requireDig(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "hostsdir")
	write := func(name, text string) {
		p := filepath.Join(dir, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("pre", "10.9.0.1 pre.test\n10.9.0.4 keep.test\n")
	write(".dot", "10.9.1.1 dot.test\n")
	write("backup~", "10.9.1.2 tilde.test\n")
	write("#autosave#", "10.9.1.3 emacs.test\n")
	write("sub/f", "10.9.1.4 sub.test\n")
	file := filepath.Join(tmp, "hosts")
	must(t, os.WriteFile(file, []byte("10.9.0.1 addn.test\n"), 0o644))
	dfAddr, dmAddr, _, _ := hostsPair(t, file, "hostsdir="+dir)
	cases := []string{"pre.test A", "keep.test A", "addn.test A", "dot.test A", "tilde.test A", "emacs.test A", "sub.test A",
		"-x 10.9.0.1", "-x 10.9.0.4", "-x 10.9.1.1"}
	compareDnsmasq(t, dfAddr, dmAddr, cases)
	// wait until both answer name A with want (an address, or the
	// upstream's 192.0.2.99 when the name left the files).
	wait := func(name, want string) {
		t.Helper()
		for _, s := range []struct{ who, addr string }{{"dnsmasq", dmAddr}, {"dnsforward", dfAddr}} {
			eventually.Holds(t, 15*time.Second, s.who+" to answer "+name+" with "+want, func() (bool, string) {
				r := exchange(t, s.addr, name+".", dns.TypeA, "udp")
				return len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == want, r.String()
			})
		}
	}
	// Each name is asked after it is in the files or never asked before:
	// dnsmasq answers a name that joins the files with its cached upstream
	// records too (see the README's differences).
	write("new", "10.9.0.2 new.test\n")
	wait("new.test", "10.9.0.2")
	compareDnsmasq(t, dfAddr, dmAddr, []string{"new.test A", "-x 10.9.0.2", "pre.test A", "-x 10.9.0.1"})
	write("new", "10.9.0.3 new.test\n")
	wait("new.test", "10.9.0.3")
	compareDnsmasq(t, dfAddr, dmAddr, []string{"new.test A", "-x 10.9.0.3", "-x 10.9.0.2"})
	must(t, os.WriteFile(filepath.Join(tmp, "moving"), []byte("10.9.0.5 moved.test\n"), 0o644))
	must(t, os.Rename(filepath.Join(tmp, "moving"), filepath.Join(dir, "moved")))
	wait("moved.test", "10.9.0.5")
	compareDnsmasq(t, dfAddr, dmAddr, []string{"moved.test A", "-x 10.9.0.5"})
	must(t, os.Remove(filepath.Join(dir, "pre")))
	wait("pre.test", "192.0.2.99")
	compareDnsmasq(t, dfAddr, dmAddr, []string{"keep.test A", "-x 10.9.0.1", "-x 10.9.0.4"})
}

// TestDomainNeededAsDnsmasq: with -domain-needed, A, AAAA and ANY
// questions (class IN) of a name without a dot get NXDOMAIN without going
// upstream, as from dnsmasq 2.90 with --domain-needed; other types and
// classes, names with a dot, and names of the hosts files (its other
// family too: NOERROR) are answered as without it.
func TestDomainNeededAsDnsmasq(t *testing.T) {
	requireDig(t)
	file := filepath.Join(t.TempDir(), "hosts")
	must(t, os.WriteFile(file, []byte(hostsTestFile), 0o644))
	dfAddr, dmAddr, _, _ := hostsPair(t, file, "domain-needed")
	compareDnsmasq(t, dfAddr, dmAddr, []string{
		"plain A", "plain AAAA", "plain ANY", "PLAIN A", "+noedns plain A", "+tcp plain AAAA", "+dnssec plain A",
		"plain MX", "plain TXT", "plain SRV", "-c CH plain A", "dotted.test A",
		"shortname A", "shortname AAAA", "shortname MX",
	})
}
