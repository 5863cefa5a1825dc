package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Counts are the server-side costs the benchmark reads.
//
//   - RPCs: consul_rpc_request (net/rpc requests the server received from
//     client agents; the server's own HTTP API calls it in-process and is
//     not counted) plus consul_grpc_server_request_count and
//     consul_grpc_server_stream_count with server_type="internal" (unary
//     gRPC calls and streaming subscriptions opened by client agents).
//     Consul 1.21 documents consul.rpc.server.call with per-method labels,
//     but no such sample reaches a 1.21.0 server's /v1/agent/metrics
//     (checked on the in-memory and Prometheus formats); the same call is
//     logged at trace level, so Methods counts those lines (monitor). The
//     client agents' consul_api_http_count{method,path} says what the
//     watchers asked their agent.
//   - Bytes: tcpi_bytes_sent of every established socket whose local end
//     is the server's RPC port (127.0.0.2:8300), read with `ss -tin`. That
//     port carries every answer to a client agent, RPC and streaming (gRPC
//     is multiplexed on it), and nothing else; /proc/<pid>/io counts all
//     write(2)s, including raft's log and snapshot files and the agents'
//     gossip, so it cannot be attributed to watches.
//   - CPU: utime+stime of the server process from /proc/<pid>/stat.
type Counts struct {
	RPCs    float64
	Streams float64
	Bytes   float64
	CPUms   float64
	// Paths is what the client agents were asked, by "METHOD path".
	Paths map[string]float64
	// Methods is the server's net/rpc calls by method, from its
	// rpc_server_call trace lines (see monitor).
	Methods map[string]float64
}

func subMap(a, b map[string]float64) map[string]float64 {
	r := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			r[k] = d
		}
	}
	return r
}

func scaleMap(a map[string]float64, f float64) map[string]float64 {
	r := map[string]float64{}
	for k, v := range a {
		r[k] = v * f
	}
	return r
}

func (c Counts) sub(o Counts) Counts {
	return Counts{RPCs: c.RPCs - o.RPCs, Streams: c.Streams - o.Streams, Bytes: c.Bytes - o.Bytes, CPUms: c.CPUms - o.CPUms,
		Paths: subMap(c.Paths, o.Paths), Methods: subMap(c.Methods, o.Methods)}
}

func (c Counts) scale(f float64) Counts {
	return Counts{RPCs: c.RPCs * f, Streams: c.Streams * f, Bytes: c.Bytes * f, CPUms: c.CPUms * f,
		Paths: scaleMap(c.Paths, f), Methods: scaleMap(c.Methods, f)}
}

// meter reads Counts; a background poll of the server's sockets keeps the
// bytes of connections that close between two readings.
type meter struct {
	serverPID int
	clkTck    float64

	mu      sync.Mutex
	socks   map[string]float64 // "local peer" -> last bytes_sent
	closed  float64            // bytes_sent of sockets gone since
	err     error
	methods map[string]float64 // net/rpc calls by method so far
}

func newMeter(ctx context.Context, serverPID int) *meter {
	m := &meter{serverPID: serverPID, clkTck: 100, socks: map[string]float64{}, methods: map[string]float64{}}
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			m.clkTck = v
		}
	}
	go func() {
		for {
			m.pollSockets()
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return m
}

// pollSockets reads the server's RPC-port sockets with ss.
func (m *meter) pollSockets() float64 {
	out, err := exec.Command("ss", "-tinH", "state", "established", "( sport = :8300 )", "src", ServerIP).Output()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.err = fmt.Errorf("ss: %w", err)
		return 0
	}
	now := map[string]float64{}
	var key string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			f := strings.Fields(line)
			if len(f) >= 4 {
				key = f[2] + " " + f[3]
			}
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "bytes_sent:"); ok && key != "" {
				n, _ := strconv.ParseFloat(v, 64)
				now[key] = n
			}
		}
	}
	for k, v := range m.socks {
		if _, ok := now[k]; !ok {
			m.closed += v
		}
	}
	m.socks = now
	total := m.closed
	for _, v := range now {
		total += v
	}
	return total
}

// read takes a reading of every count.
func (m *meter) read(ctx context.Context) (Counts, error) {
	c := Counts{Paths: map[string]float64{}, Methods: map[string]float64{}}
	c.Bytes = m.pollSockets()
	m.mu.Lock()
	err := m.err
	for k, v := range m.methods {
		c.Methods[k] = v
	}
	m.mu.Unlock()
	if err != nil {
		return c, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.serverPID))
	if err != nil {
		return c, fmt.Errorf("server cpu: %w", err)
	}
	// Fields after the ")" closing the command name: state is field 3,
	// utime 14 and stime 15 (proc(5)).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	c.CPUms = (ut + st) * 1000 / m.clkTck
	prom, err := scrape(ctx, ServerIP)
	if err != nil {
		return c, err
	}
	c.RPCs = prom[`consul_rpc_request`] + prom[`consul_grpc_server_request_count{server_type="internal"}`]
	c.Streams = prom[`consul_grpc_server_stream_count{server_type="internal"}`]
	for _, ip := range ClientIPs {
		p, err := scrape(ctx, ip)
		if err != nil {
			return c, err
		}
		for k, v := range p {
			rest, ok := strings.CutPrefix(k, "consul_api_http_count{")
			if !ok {
				continue
			}
			method, path := label(rest, "method"), label(rest, "path")
			if path == "v1_agent_metrics" {
				continue // the benchmark's own readings
			}
			c.Paths[method+" "+path] += v
		}
	}
	return c, nil
}

// monitor follows the server's log at trace level through
// /v1/agent/monitor (the server's own log level stays "warn") and counts its
// rpc_server_call lines with rpc_type=net/rpc by method: Consul 1.21 records
// every net/rpc call there (agent/rpc/middleware RequestRecorder.Record),
// while the consul.rpc.server.call sample it records with the same labels
// does not reach /v1/agent/metrics. A call is counted when it returns, so
// a blocking query counts when it answers. ready is closed once the stream
// is open.
func (m *meter) monitor(ctx context.Context, ready chan<- struct{}) {
	once := sync.Once{}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ServerIP+":8500/v1/agent/monitor?loglevel=trace", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			once.Do(func() { close(ready) })
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				if !strings.Contains(line, "rpc_server_call:") || !strings.Contains(line, "rpc_type=net/rpc") {
					continue
				}
				_, rest, _ := strings.Cut(line, " method=")
				if f := strings.Fields(rest); len(f) > 0 {
					m.mu.Lock()
					m.methods[f[0]]++
					m.mu.Unlock()
				}
			}
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	once.Do(func() { close(ready) })
}

// label returns the value of name in a Prometheus label list `a="x",b="y"}`.
func label(s, name string) string {
	i := strings.Index(s, name+`="`)
	if i < 0 {
		return ""
	}
	s = s[i+len(name)+2:]
	if j := strings.IndexByte(s, '"'); j >= 0 {
		return s[:j]
	}
	return s
}

// scrape reads an agent's Prometheus metrics into "name{labels}" -> value.
func scrape(ctx context.Context, ip string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+":8500/v1/agent/metrics?format=prometheus", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", ip, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: status %d, %v", ip, resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, nil
}
