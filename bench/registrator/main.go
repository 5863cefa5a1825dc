// Command registrator-bench drives bench/registrator.sh. It is also the
// workload: built static, it is the only file of the FROM scratch image the
// benchmark's containers run ("idle" mode).
//
//	floor   -consul ADDR                 a bare Docker event subscriber that makes one agent
//	                                     register call per container start: the floor
//	latency -consul ADDR -n 50 -prefix P docker start returning → service in /v1/catalog/service/NAME
//	fleet   -n 200 -prefix P up|down     start (or remove) many containers at once
//	wait    -consul ADDR -host H -n 200  wait until the agent holds n services owned by H
//	cleanup -consul ADDR                 remove every service this benchmark left
//	idle                                 the container workload: wait for SIGTERM
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/hashicorp/consul/api"
)

const (
	benchLabel = "berth-bench"
	image      = "berth-bench-registrator:latest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: registrator-bench floor|latency|fleet|wait|cleanup|idle [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	consulAddr := fs.String("consul", os.Getenv("CONSUL_HTTP_ADDR"), "Consul HTTP address")
	n := fs.Int("n", 50, "number of containers")
	prefix := fs.String("prefix", "berth-bench", "container and service name prefix")
	host := fs.String("host", "", "registrator -hostname whose services to count")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	_ = fs.Parse(os.Args[2:])
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if mode == "idle" {
		<-ctx.Done()
		return
	}
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	cfg := api.DefaultConfig()
	if *consulAddr != "" {
		cfg.Address = *consulAddr
	}
	consul, err := api.NewClient(cfg)
	if err != nil {
		fail(err)
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fail(err)
	}
	defer docker.Close()
	switch mode {
	case "floor":
		err = floor(ctx, docker, consul)
	case "latency":
		err = latency(ctx, docker, consul, *n, *prefix)
	case "fleet":
		switch fs.Arg(0) {
		case "up":
			err = fleetUp(ctx, docker, *n, *prefix)
		case "down":
			err = fleetDown(context.Background(), docker, *prefix)
		default:
			err = errors.New("fleet: want up or down")
		}
	case "wait":
		err = waitOwned(ctx, consul, *host, *n)
	case "cleanup":
		err = cleanup(consul)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "registrator-bench:", err)
	os.Exit(1)
}

// floor: the least any registrator can do per container start: receive the
// start event and make one register call. No inspect, no reconcile.
func floor(ctx context.Context, docker *client.Client, consul *api.Client) error {
	msgs, errs := docker.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "container"), filters.Arg("event", "start"), filters.Arg("label", benchLabel+"=1"))})
	fmt.Fprintln(os.Stderr, "floor: subscribed")
	for {
		select {
		case m := <-msgs:
			name := m.Actor.Attributes["SERVICE_NAME"]
			if name == "" {
				continue
			}
			reg := &api.AgentServiceRegistration{ID: "floor:" + name, Name: name, Port: 80, Address: "127.0.0.1",
				Meta: map[string]string{benchLabel: "1"}}
			if err := consul.Agent().ServiceRegister(reg); err != nil {
				fmt.Fprintln(os.Stderr, "floor: register:", err)
			}
		case err := <-errs:
			return err
		}
	}
}

func create(ctx context.Context, docker *client.Client, name, service string, port int) (string, error) {
	_ = docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
	exposed := strconv.Itoa(port) + "/tcp"
	c, err := docker.ContainerCreate(ctx, &container.Config{
		Image:        image,
		Cmd:          []string{"idle"},
		Labels:       map[string]string{benchLabel: "1", "SERVICE_NAME": service},
		ExposedPorts: nat.PortSet{nat.Port(exposed): {}},
	}, &container.HostConfig{NetworkMode: "host"}, nil, nil, name)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	return c.ID, nil
}

// latency starts n containers one after the other and times each from
// ContainerStart returning to the service appearing in the catalog.
func latency(ctx context.Context, docker *client.Client, consul *api.Client, n int, prefix string) error {
	ids := make([]string, n)
	for i := range n {
		id, err := create(ctx, docker, fmt.Sprintf("%s-%02d", prefix, i), fmt.Sprintf("%s-%02d", prefix, i), 20000+i)
		if err != nil {
			return err
		}
		ids[i] = id
	}
	lat := make([]time.Duration, 0, n)
	for i, id := range ids {
		name := fmt.Sprintf("%s-%02d", prefix, i)
		_, meta, err := consul.Catalog().Service(name, "", nil)
		if err != nil {
			return err
		}
		seen := make(chan time.Time, 1)
		go func(idx uint64) {
			for ctx.Err() == nil {
				svcs, m, err := consul.Catalog().Service(name, "", (&api.QueryOptions{WaitIndex: idx, WaitTime: 30 * time.Second}).WithContext(ctx))
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if len(svcs) > 0 {
					seen <- time.Now()
					return
				}
				idx = m.LastIndex
			}
		}(meta.LastIndex)
		if err := docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		t0 := time.Now()
		select {
		case t1 := <-seen:
			d := t1.Sub(t0)
			if d < 0 {
				d = 0
			}
			lat = append(lat, d)
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s: not in the catalog 30s after docker start", name)
		}
	}
	if os.Getenv("BENCH_VERBOSE") != "" {
		fmt.Fprintln(os.Stderr, prefix, "in start order (ms):", fmtMs(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1)+0.5)] }
	fmt.Printf("%.2f %.2f\n", ms(p(0.5)), ms(p(0.99)))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMs(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.1f", ms(d))
	}
	return strings.Join(parts, " ")
}

// fleetUp starts n containers, four at a time.
func fleetUp(ctx context.Context, docker *client.Client, n int, prefix string) error {
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 4)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("%s-%03d", prefix, i)
			id, err := create(ctx, docker, name, prefix, 30000+i)
			if err == nil {
				err = docker.ContainerStart(ctx, id, container.StartOptions{})
			}
			if err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// fleetDown removes every container whose name starts with prefix and that
// carries the benchmark label.
func fleetDown(ctx context.Context, docker *client.Client, prefix string) error {
	list, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", benchLabel+"=1"))})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, c := range list {
		if len(c.Names) == 0 || !strings.HasPrefix(strings.TrimPrefix(c.Names[0], "/"), prefix) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}()
	}
	wg.Wait()
	return nil
}

// waitOwned waits until the agent holds n services owned by host and prints
// how long that took from this command's start.
func waitOwned(ctx context.Context, consul *api.Client, host string, n int) error {
	start := time.Now()
	for {
		svcs, err := consul.Agent().ServicesWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
		if err == nil {
			k := 0
			for _, s := range svcs {
				if s.Meta["berth-registrator-host"] == host {
					k++
				}
			}
			if k >= n {
				fmt.Printf("%.0f\n", ms(time.Since(start)))
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d services of %s: %w", n, host, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cleanup deregisters what the benchmark registered in the agent.
func cleanup(consul *api.Client) error {
	svcs, err := consul.Agent().Services()
	if err != nil {
		return err
	}
	for id, s := range svcs {
		if s.Meta[benchLabel] == "1" || strings.HasPrefix(s.Meta["berth-registrator-host"], "berth-bench") {
			_ = consul.Agent().ServiceDeregister(id)
		}
	}
	return nil
}
