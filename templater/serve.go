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

	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
)

// serve runs the runner of session s until it ends or a stop signal comes,
// and returns the exit code. base is the command line alone, read again
// with the files on each reload signal.
func serve(base *options, s *session, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := telemetry.NewRegistry()
	r := &runner{cfg: s.rc, log: s.log, m: newMetrics(reg), reg: reg, stdin: os.Stdin, stdout: stdout, stderr: stderr, tmpls: s.tmpls,
		reload: make(chan reloadRequest, 1), dryLast: map[string][]byte{}}
	if err := r.writePid(s.o.pidFile); err != nil {
		return s.o.cli.Fail(err, exitRunner)
	}
	defer r.removePid()
	r.connect(ctx, s)
	var cur atomic.Pointer[session]
	cur.Store(s)
	r.onSession = cur.Store
	// What lives across reloads logs through the session of the moment.
	liveLog := slog.New(liveHandler{current: func() slog.Handler { return cur.Load().log.Handler() }})
	sigFwd := make(chan syscall.Signal, 8)
	r.sigs = sigFwd
	if supervisor.NeedReaper() {
		// As PID 1 (in a container) orphans of commands and the exec child
		// are ours to collect.
		r.reaper = supervisor.NewReaper(liveLog)
		go r.reaper.Run(ctx)
	}
	// Bound once: -metrics-addr is a flag (or TEMPLATER_METRICS_ADDR),
	// and a reload reads the files again over the command line as it
	// was given, so the address never changes; only its log does.
	metricsLn, err := s.o.cli.ListenMetrics()
	if err != nil {
		return s.o.cli.Fail(err, exitConfig)
	}
	metricsLn.Serve(ctx, reg, r.health, liveLog)
	sigs := make(chan os.Signal, 16)
	supervisor.NotifyAll(sigs)
	defer signal.Stop(sigs)
	var stopCode atomic.Int32
	go func() {
		// held: signals read while a reload was being taken, handled
		// once it was (below), in their order.
		var held []os.Signal
		for {
			var sg os.Signal
			if len(held) > 0 {
				sg, held = held[0], held[1:]
			} else {
				select {
				case <-ctx.Done():
					return
				case sg = <-sigs:
				}
			}
			sig, ok := sg.(syscall.Signal)
			if !ok {
				continue
			}
			// The kill and reload signals of the session running now:
			// a reload that changed them takes effect for the next
			// signal, as consul-template compares each signal with its
			// config of the moment (cli.go Run).
			now := cur.Load()
			switch {
			// SIGINT, when it is not the kill signal, is any other
			// signal: forwarded to the -exec child, else nothing (as
			// consul-template's cli.go Run).
			case sig == now.killSig || sig == syscall.SIGTERM:
				now.log.Info("stopping", "signal", supervisor.SignalName(sig))
				if sig == now.killSig {
					// consul-template's line, whatever the log level
					// (cli.go Run).
					fmt.Fprintln(stderr, "Cleaning up...")
					stopCode.Store(exitSignal)
				}
				cancel()
				return
			case sig == now.reloadSig:
				fmt.Fprintln(stderr, "Reloading configuration...")
				rq := reloadRequest{done: make(chan struct{})}
				rq.s, rq.code, rq.err = prepare(base, stderr)
				select {
				case r.reload <- rq:
				default:
					continue
				}
				// The next signal is handled once the runner took the new
				// session or refused it, so that it meets that session's
				// signals; meanwhile (the runner may be in a long pass)
				// SIGTERM still stops at once, and the others wait.
				for waiting := true; waiting; {
					select {
					case <-rq.done:
						waiting = false
					case <-ctx.Done():
						return
					case sg := <-sigs:
						if sg == syscall.SIGTERM {
							now.log.Info("stopping", "signal", "SIGTERM")
							cancel()
							return
						}
						held = append(held, sg)
					}
				}
			case supervisor.Forwardable(sig):
				select {
				case sigFwd <- sig:
				default:
				}
			}
		}
	}()

	s.log.Info("starting", "templates", len(s.tmpls), "consul", s.ccfg.Address, "max_stale", s.o.maxStale, "once", s.o.once, "dry", s.o.dry)
	err = r.run(ctx)
	var ee *errExit
	switch {
	case err == nil && ctx.Err() != nil:
		return int(stopCode.Load())
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		// One line says why (cli.Fail), not a log record as well.
		return s.o.cli.Fail(ee.err, ee.code)
	default:
		return s.o.cli.Fail(err, exitRunner)
	}
}
