package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// Proc is a command running on a host through docker exec.
type Proc struct {
	Host   *Node
	Args   []string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	stdout bytes.Buffer
	done   chan struct{}
	code   int
	err    error
}

// Start runs args on host h (its agent is at 127.0.0.1:8500 there).
func (c *Cluster) Start(h *Node, args ...string) (*Proc, error) {
	p := &Proc{Host: h, Args: args, done: make(chan struct{})}
	p.cmd = exec.Command(c.docker, append([]string{"exec", h.Name}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		default:
			p.err = err
		}
		close(p.done)
	}()
	return p, nil
}

// Wait waits for the command up to timeout and returns its exit code.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.code, p.err
	case <-time.After(timeout):
		return -1, fmt.Errorf("%v on %s still running after %s", p.Args, p.Host.short(), timeout)
	}
}

// Done is closed when the command has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stderr is what the command wrote to its standard error so far (complete
// once Done is closed).
func (p *Proc) Stderr() string {
	select {
	case <-p.done:
		return p.stderr.String()
	default:
		return "(still running)"
	}
}

// Stdout is what the command wrote to its standard output; it waits up to
// timeout for the command to end.
func (p *Proc) Stdout(timeout time.Duration) (string, error) {
	if _, err := p.Wait(timeout); err != nil {
		return "", err
	}
	return p.stdout.String(), nil
}

// Kill kills the docker exec client of a command still running (the command
// itself ends with it or with its container).
func (p *Proc) Kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
	}
}

// Exec runs args on host h and returns its standard output (docker exec;
// bounded by 3 minutes).
func (c *Cluster) Exec(h *Node, args ...string) (string, error) {
	return c.dockerOut(append([]string{"exec", h.Name}, args...)...)
}
