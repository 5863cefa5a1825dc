package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/query"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/hashicorp/consul/api"
)

// serve runs the runner until it ends or a stop signal comes, and returns
// the exit code.
func serve(o *options, fc *fileConfig, rc *runConfig, tmpls []*tmpl, client *api.Client, ccfg *api.Config, log *slog.Logger, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := telemetry.NewRegistry()
	qcfg := query.Config{Client: client, MaxStale: o.maxStale, Log: log, RetryMin: o.retryMin, RetryMax: o.retryMax}
	if fc.BlockQueryWait != nil {
		qcfg.Wait = *fc.BlockQueryWait
	}
	qc := query.New(qcfg)
	go func() { _ = qc.Run(ctx) }() // ends with ctx
	reg.MustRegister(qc.Collector("templater"))
	e := &env{q: qc, log: log, pollTick: 15 * time.Second,
		giveUpAfter: query.FailuresToGiveUp(o.retryEnabled, o.retryAttempts), giveUp: make(chan error, 1)}
	r := &runner{cfg: rc, log: log, store: newStore(e), m: newMetrics(reg), stdin: os.Stdin, stdout: stdout, stderr: stderr, tmpls: tmpls,
		reload: make(chan reloadRequest, 1), giveUp: e.giveUp, dryLast: map[string][]byte{}}
	r.childEnv = childEnv(o, fc, ccfg)
	sigFwd := make(chan syscall.Signal, 8)
	r.sigs = sigFwd
	if supervisor.NeedReaper() {
		// As PID 1 (in a container) orphans of commands and the exec child
		// are ours to collect.
		r.reaper = supervisor.NewReaper(log)
		go r.reaper.Run(ctx)
	}
	metricsLn, err := o.cli.ListenMetrics()
	if err != nil {
		return o.cli.Fail(err, exitConfig)
	}
	metricsLn.Serve(ctx, reg, r.health, log)
	sigs := make(chan os.Signal, 16)
	supervisor.NotifyAll(sigs)
	defer signal.Stop(sigs)
	killSig, _ := parseConfigSignal(o.killSignal)
	reloadSig, _ := parseConfigSignal(o.reloadSignal)
	var stopCode atomic.Int32
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				sig, ok := s.(syscall.Signal)
				if !ok {
					continue
				}
				switch {
				// SIGINT, when it is not the kill signal, is any other
				// signal: forwarded to the -exec child, else nothing (as
				// consul-template's cli.go Run).
				case sig == killSig || sig == syscall.SIGTERM:
					log.Info("stopping", "signal", supervisor.SignalName(sig))
					if sig == killSig {
						// consul-template's line, whatever the log level
						// (cli.go Run).
						fmt.Fprintln(stderr, "Cleaning up...")
						stopCode.Store(exitSignal)
					}
					cancel()
					return
				case sig == reloadSig:
					fmt.Fprintln(stderr, "Reloading configuration...")
					rq := reloadRequest{}
					var nfc *fileConfig
					rq.cfg, nfc, rq.err = buildConfig(o)
					if rq.err == nil {
						warnConfig(log, nfc)
						rq.apply, rq.err = reloadLogLevel(o, nfc)
					}
					select {
					case r.reload <- rq:
					default:
					}
				case supervisor.Forwardable(sig):
					select {
					case sigFwd <- sig:
					default:
					}
				}
			}
		}
	}()

	log.Info("starting", "templates", len(tmpls), "consul", ccfg.Address, "max_stale", o.maxStale, "once", o.once, "dry", o.dry)
	err = r.run(ctx)
	var ee *errExit
	switch {
	case err == nil && ctx.Err() != nil:
		return int(stopCode.Load())
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		// One line says why (cli.Fail), not a log record as well.
		return o.cli.Fail(ee.err, ee.code)
	default:
		return o.cli.Fail(err, exitRunner)
	}
}
