package main

import (
	"bytes"

	"github.com/miekg/dns"
)

// bogusPrivate reports whether q is a question dnsmasq 2.90 with
// --bogus-priv answers NXDOMAIN to instead of forwarding it (when the hosts
// files do not answer it): class IN, type PTR or ANY, a reverse name whose
// address is private (privateV4, privateV6). The name is read as dnsmasq
// reads it (rfc1035.c in_arpa_name_2_addr, answer_request): at most 75
// characters without the root's dot; under in-addr.arpa every label all
// digits, the last one the first octet, missing low octets zero and
// labels beyond four dropped from the low end (each octet the label's
// value modulo 256); under ip6.arpa (or ip6.int) every label one hex
// digit, missing low nibbles zero. TestBogusPrivAsDnsmasq compares it with
// dnsmasq itself. The bit-string form \[x...] is not read (forwarded).
func bogusPrivate(q *query) bool {
	if q.qclass != dns.ClassINET || q.qtype != dns.TypePTR && q.qtype != dns.TypeANY {
		return false
	}
	name := q.name // lower case, fully qualified
	if len(name) < 2 || len(name)-1 > 75 {
		return false
	}
	name = name[:len(name)-1]
	if rest, ok := bytes.CutSuffix(name, []byte(".in-addr.arpa")); ok {
		var a uint32
		for _, l := range bytes.Split(rest, []byte{'.'}) {
			var v uint64
			big := false
			for _, c := range l {
				if c < '0' || c > '9' {
					return false
				}
				if v > (1<<63-1-9)/10 {
					big = true // atoi beyond a long: all bits set
				}
				v = v*10 + uint64(c-'0')
			}
			b := byte(v)
			if big {
				b = 0xff
			}
			a = a>>8 | uint32(b)<<24
		}
		return privateV4(a)
	}
	rest, ok := bytes.CutSuffix(name, []byte(".ip6.arpa"))
	if !ok {
		rest, ok = bytes.CutSuffix(name, []byte(".ip6.int"))
	}
	if !ok {
		return false
	}
	var a [16]byte
	for _, l := range bytes.Split(rest, []byte{'.'}) {
		if len(l) != 1 {
			return false
		}
		var n byte
		switch c := l[0]; {
		case '0' <= c && c <= '9':
			n = c - '0'
		case 'a' <= c && c <= 'f':
			n = c - 'a' + 10
		default:
			return false
		}
		for i := 15; i > 0; i-- {
			a[i] = a[i]>>4 | a[i-1]<<4
		}
		a[0] = a[0]>>4 | n<<4
	}
	return privateV6(a)
}

// privateV4 reports whether a is in one of the IPv4 ranges dnsmasq's
// --bogus-priv treats as private (its private_net with localhost banned):
// 0/8, 10/8, 127/8, 169.254/16, 172.16/12, 192.168/16, the three
// documentation /24s (RFC 5737) and 255.255.255.255.
func privateV4(a uint32) bool {
	return a>>24 == 0 || a>>24 == 10 || a>>24 == 127 ||
		a>>16 == 0xa9fe || a>>20 == 0xac1 || a>>16 == 0xc0a8 ||
		a>>8 == 0xc00002 || a>>8 == 0xc63364 || a>>8 == 0xcb0071 ||
		a == 0xffffffff
}

// privateV6 reports whether a is in one of the IPv6 ranges dnsmasq's
// --bogus-priv treats as private (its private_net6): an IPv4-mapped
// address of a private IPv4 one, ::, ::1, fe80::/10, fec0::/10, fd00::/8
// (not fc00::/8) and 2001:db8::/32.
func privateV6(a [16]byte) bool {
	zero10 := bytes.Equal(a[:10], make([]byte, 10))
	if zero10 && a[10] == 0xff && a[11] == 0xff {
		return privateV4(uint32(a[12])<<24 | uint32(a[13])<<16 | uint32(a[14])<<8 | uint32(a[15]))
	}
	if zero10 && a[10] == 0 && a[11] == 0 && a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] <= 1 {
		return true // :: and ::1
	}
	return a[0] == 0xfe && a[1]&0x80 != 0 || // fe80::/10, fec0::/10
		a[0] == 0xfd ||
		a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8
}
