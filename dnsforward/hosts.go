package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/miekg/dns"
)

// defaultHostsFile is read unless -no-hosts, as dnsmasq reads it.
const defaultHostsFile = "/etc/hosts"

// hostsTable is the answers the hosts files give, as dnsmasq 2.90 gives
// them: A, AAAA and ANY of a name in a file (class IN; every address of
// the name in file order, TTL -local-ttl, AA set), PTR and ANY of the
// reverse name of an address in a file (the first name of the first line
// with the address). Other questions about those names are not answered
// here (dnsmasq forwards them, the other address family too).
type hostsTable struct {
	// answers is keyed as reader.key: the lower-case name and the type.
	answers map[string]*answer
	// names are the lower-case names in the files.
	names map[string]struct{}
}

// has reports whether name (lower case) is a name in the hosts files.
func (h *hostsTable) has(name []byte) bool {
	if h == nil {
		return false
	}
	_, ok := h.names[string(name)]
	return ok
}

// lookup returns the answer for key (reader.key of a class IN question).
func (h *hostsTable) lookup(key []byte) *answer {
	if h == nil {
		return nil
	}
	return h.answers[string(key)]
}

// hostsFiles expands the hosts files as dnsmasq 2.90 reads them: the
// files first, then the files in the directories (each directory's by
// name).
func hostsFiles(paths []string, log *slog.Logger) []string {
	var out, dirs []string
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			dirs = append(dirs, p)
			continue
		}
		out = append(out, p)
	}
	return append(out, hostsDirFiles(dirs, log)...)
}

type hostsEntry struct {
	v4, v6 []netip.Addr
}

// hostsDirSkips reports whether dnsmasq 2.90 leaves out a file of a
// directory of hosts files (--addn-hosts or --hostsdir): dot files, emacs
// backups ("name~") and emacs auto-save files ("#name#"), as measured
// with it in TestHostsFilesOrderAsDnsmasq and TestHostsDirAsDnsmasq.
func hostsDirSkips(name string) bool {
	return name == "" || name[0] == '.' || name[len(name)-1] == '~' ||
		(len(name) > 1 && name[0] == '#' && name[len(name)-1] == '#')
}

// dirHostsFiles is the hosts files of directory dir as dnsmasq 2.90 reads
// them, by name: the regular files (a link to one too) directly in it,
// without the names hostsDirSkips leaves out.
func dirHostsFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if hostsDirSkips(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// hostsDirFiles is the files of directories of hosts files (-addn-hosts
// directories, -hostsdir; dirHostsFiles), in order; a directory that
// cannot be read is logged and skipped (dnsmasq starts without it).
func hostsDirFiles(dirs []string, log *slog.Logger) []string {
	var out []string
	for _, d := range dirs {
		files, err := dirHostsFiles(d)
		if err != nil {
			log.Warn("hosts directory not read", "dir", d, "err", err)
			continue
		}
		out = append(out, files...)
	}
	return out
}

// loadHosts reads the hosts files in order, then the files of the
// -hostsdir directories (dnsmasq 2.90 reads them last), and builds their
// answers. A file that cannot be read and a line that cannot be used are
// logged and skipped, as dnsmasq skips them.
func loadHosts(paths, dirs []string, ttl time.Duration, log *slog.Logger) *hostsTable {
	names := map[string]*hostsEntry{}
	var order []string
	ptr := map[netip.Addr]string{}
	var ptrOrder []netip.Addr
	for _, file := range append(hostsFiles(paths, log), hostsDirFiles(dirs, log)...) {
		n, err := readHostsFile(file, log, func(ip netip.Addr, name string) {
			e := names[name]
			if e == nil {
				e = &hostsEntry{}
				names[name] = e
				order = append(order, name)
			}
			l := &e.v6
			if ip.Is4() {
				l = &e.v4
			}
			for _, x := range *l {
				if x == ip {
					return
				}
			}
			*l = append(*l, ip)
		}, func(ip netip.Addr, name string) {
			if _, ok := ptr[ip]; !ok {
				ptr[ip] = name
				ptrOrder = append(ptrOrder, ip)
			}
		})
		if err != nil {
			log.Warn("hosts file not read", "file", file, "err", err)
			continue
		}
		log.Info("hosts file read", "file", file, "names", n)
	}
	h := &hostsTable{answers: map[string]*answer{}, names: map[string]struct{}{}}
	sec := uint32(ttl / time.Second)
	add := func(name string, qtype uint16, rrs []dns.RR) {
		m := new(dns.Msg)
		m.Response, m.Authoritative, m.RecursionAvailable = true, true, true
		m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
		m.Answer = rrs
		a, err := newAnswer(m, zoneHosts, false, false)
		if err != nil {
			log.Warn("hosts file name not answered", "name", name, "err", err)
			return
		}
		h.answers[name+string([]byte{byte(qtype >> 8), byte(qtype)})] = a
	}
	for _, name := range order {
		h.names[name] = struct{}{}
		e := names[name]
		var a4, a6 []dns.RR
		for _, ip := range e.v4 {
			a4 = append(a4, addrRR(name, ip, sec))
		}
		for _, ip := range e.v6 {
			a6 = append(a6, &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: sec}, AAAA: ip.AsSlice()})
		}
		if len(a4) > 0 {
			add(name, dns.TypeA, a4)
		}
		if len(a6) > 0 {
			add(name, dns.TypeAAAA, a6)
		}
		add(name, dns.TypeANY, append(append([]dns.RR(nil), a4...), a6...))
	}
	for _, ip := range ptrOrder {
		rev := reverseName(ip)
		rr := []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: rev, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: sec}, Ptr: ptr[ip]}}
		add(rev, dns.TypePTR, rr)
		add(rev, dns.TypeANY, rr)
	}
	return h
}

// reverseName is ip's name under in-addr.arpa. or ip6.arpa.
func reverseName(ip netip.Addr) string {
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		fmt.Fprintf(&b, "%d.%d.%d.%d.in-addr.arpa.", a[3], a[2], a[1], a[0])
		return b.String()
	}
	a := ip.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[a[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

// readHostsFile calls name for every address and name of file, and
// first for the first name of each line, and returns how many names it
// read. Comments start at '#'; a line with an address and no name is
// skipped quietly, one with a bad address or a bad name logged.
func readHostsFile(file string, log *slog.Logger, name, first func(netip.Addr, string)) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n, lineNo := 0, 0
	for sc.Scan() {
		lineNo++
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		ip, err := netip.ParseAddr(fields[0])
		if err != nil || ip.Zone() != "" {
			log.Warn("hosts file: bad address, line skipped", "file", file, "line", lineNo, "address", fields[0])
			continue
		}
		isFirst := true
		for _, nm := range fields[1:] {
			fq := dns.Fqdn(strings.ToLower(nm))
			if _, ok := dns.IsDomainName(fq); !ok || fq == "." {
				log.Warn("hosts file: bad name skipped", "file", file, "line", lineNo, "name", nm)
				continue
			}
			n++
			name(ip, fq)
			if isFirst {
				first(ip, fq)
				isFirst = false
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	return n, nil
}

// hostsPaths is the hosts files in the order dnsmasq reads them:
// /etc/hosts unless noHosts, then the -addn-hosts files, the last given
// first (dnsmasq 2.90 keeps its addn-hosts list so; hostsFiles then puts
// the directories' files last).
func hostsPaths(noHosts bool, addn []string) []string {
	var out []string
	if !noHosts {
		out = append(out, defaultHostsFile)
	}
	for i := len(addn) - 1; i >= 0; i-- {
		out = append(out, addn[i])
	}
	return out
}

// hostsDirSettle is how long the hosts files are read again after the
// last change seen in a -hostsdir directory: a file being written gives
// one event per write (dnsmasq waits for the writer to close it).
const hostsDirSettle = 50 * time.Millisecond

// watchHostsDirs reads the hosts files again whenever a file of a
// -hostsdir directory is created, written, moved in or out, or removed,
// until ctx is done: dnsmasq 2.90's --hostsdir ("New or changed files are
// read automatically and modified and deleted files have removed records
// automatically deleted", dnsmasq(8); TestHostsDirAsDnsmasq). A directory
// that cannot be watched is logged; SIGHUP still reads it.
func (s *Server) watchHostsDirs(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("hostsdir: cannot watch for changes", "err", err)
		return
	}
	defer w.Close()
	for _, d := range s.cfg.HostsDirs {
		if err := w.Add(d); err != nil {
			s.log.Warn("hostsdir: cannot watch for changes", "dir", d, "err", err)
		}
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	var changed []string
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.log.Warn("hostsdir: watching for changes", "err", err)
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if hostsDirSkips(filepath.Base(ev.Name)) || !ev.Op.Has(fsnotify.Create) && !ev.Op.Has(fsnotify.Write) &&
				!ev.Op.Has(fsnotify.Remove) && !ev.Op.Has(fsnotify.Rename) {
				continue
			}
			if !contains(changed, ev.Name) {
				changed = append(changed, ev.Name)
			}
			settle.Reset(hostsDirSettle)
		case <-settle.C:
			s.log.Info("hostsdir: files changed, reading the hosts files again", "files", changed)
			changed = changed[:0]
			s.readHosts()
		}
	}
}
