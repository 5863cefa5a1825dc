package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/pkg/backoff"
	"github.com/hashicorp/consul/api"
)

// sessionTTL is our session's TTL, as consul lock's. Consul invalidates a
// session whose TTL lapsed without renewal after up to twice the TTL
// (structs.SessionTTLMultiplier in Consul's source).
const sessionTTL = 15 * time.Second

// renewEvery is the renewal pace: a third of the TTL, so two renewals in a row
// can fail before the TTL is even reached.
const renewEvery = sessionTTL / 3

// errPermanent marks a Consul answer that waiting will not change (ACL denied,
// bad request): the caller stops instead of retrying.
var errPermanent = errors.New("refused by Consul")

// sessionKeeper owns our Consul session: it creates it (retrying passing
// errors with backoff), renews it on its own loop (retrying until the TTL is
// really gone instead of giving up after one error, as the Consul API's
// RenewPeriodic does), and reports when it is invalidated.
type sessionKeeper struct {
	client *api.Client
	entry  api.SessionEntry
	log    *slog.Logger
	// datacenter is -datacenter ("" when not given).
	datacenter string

	mu      sync.Mutex
	cur     *liveSession
	stop    context.CancelFunc
	created int
}

// liveSession is one session we created and the news of its end.
type liveSession struct {
	id   string
	gone chan struct{} // closed once Consul invalidated it
	once sync.Once
}

func (s *liveSession) end() { s.once.Do(func() { close(s.gone) }) }

// create makes a new session and starts renewing it. Passing errors
// (connection refused, 5xx, timeouts) are retried with backoff until ctx is
// done, saying what it waits for; a permanent refusal returns at once wrapped
// in errPermanent.
//
// first.over is called after the first try that failed.
func (k *sessionKeeper) create(ctx context.Context, first *attempt) (string, error) {
	bo := backoff.New(200*time.Millisecond, 5*time.Second)
	var since time.Time
	for {
		entry := k.entry
		id, _, err := k.client.Session().Create(&entry, (&api.WriteOptions{}).WithContext(ctx))
		if err == nil {
			k.start(id)
			if !since.IsZero() {
				k.log.Info("session created after waiting for Consul", "session", id, "waited", time.Since(since).Round(time.Millisecond))
			}
			return id, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("create session: %w (last error: %v)", ctx.Err(), err)
		}
		if permanent(err) {
			return "", fmt.Errorf("%w: create session: %v", errPermanent, err)
		}
		if unknown := k.unknownDatacenter(ctx, err); unknown != "" {
			return "", fmt.Errorf("%w: create session: %v: %s", errPermanent, err, unknown)
		}
		first.over()
		if since.IsZero() {
			since = time.Now()
		}
		k.log.Warn("waiting for Consul to create our session", "since", since.Format(time.RFC3339), "err", err)
		if bo.Sleep(ctx) != nil {
			return "", fmt.Errorf("create session: %w (last error: %v)", ctx.Err(), err)
		}
	}
}

// permanent reports whether a Consul error will not go away by retrying: a
// 4xx answer other than 429 (too many requests), a server certificate that
// cannot be verified, or https:// to an agent that speaks plain HTTP.
func permanent(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code >= 400 && se.Code < 500 && se.Code != http.StatusTooManyRequests
	}
	// A certificate we cannot verify, or https:// to a plain HTTP agent:
	// our own settings are wrong, and consul lock ends at once on them.
	var verify *tls.CertificateVerificationError
	var authority x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &host) || errors.As(err, &invalid) {
		return true
	}
	return strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// unknownDatacenter tells a -datacenter that does not exist from one that
// cannot be reached: both give Consul's "No path to datacenter", but only a
// datacenter the cluster knows (reachable or not) is in its catalog. For an
// unknown one (a typo) it returns what to say, as consul lock ends at once
// on it; else "" (the error is retried).
func (k *sessionKeeper) unknownDatacenter(ctx context.Context, err error) string {
	if k.datacenter == "" || !strings.Contains(err.Error(), "No path to datacenter") {
		return ""
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var dcs []string
	if _, qerr := k.client.Raw().Query("/v1/catalog/datacenters", &dcs, (&api.QueryOptions{}).WithContext(qctx)); qerr != nil || len(dcs) == 0 {
		return ""
	}
	for _, dc := range dcs {
		if dc == k.datacenter {
			return ""
		}
	}
	return fmt.Sprintf("-datacenter %q is not a datacenter of this cluster (it knows %s)", k.datacenter, strings.Join(dcs, ", "))
}

func (k *sessionKeeper) start(id string) {
	ctx, cancel := context.WithCancel(context.Background())
	ls := &liveSession{id: id, gone: make(chan struct{})}
	k.mu.Lock()
	if k.stop != nil {
		k.stop()
	}
	k.cur, k.stop = ls, cancel
	k.created++
	k.mu.Unlock()
	go k.renew(ctx, ls)
}

// current returns the session ID and a channel closed once it is invalidated.
func (k *sessionKeeper) current() (string, <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur == nil {
		gone := make(chan struct{})
		close(gone)
		return "", gone
	}
	return k.cur.id, k.cur.gone
}

// createdCount says how many sessions were created so far.
func (k *sessionKeeper) createdCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.created
}

// invalidate records that Consul refused session id as invalid.
func (k *sessionKeeper) invalidate(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur != nil && k.cur.id == id {
		k.cur.end()
	}
}

// renew renews the session every renewEvery. Errors are retried every second
// until twice the TTL has passed since the last successful renewal (after
// that Consul has surely invalidated it); a 404 means Consul already did.
// Either closes gone.
func (k *sessionKeeper) renew(ctx context.Context, ls *liveSession) {
	id := ls.id
	lastOK := time.Now()
	wait := renewEvery
	failing := false
	for {
		if backoff.SleepCtx(ctx, wait) != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		entry, _, err := k.client.Session().Renew(id, (&api.WriteOptions{}).WithContext(rctx))
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && entry == nil:
			k.log.Error("our session was invalidated by Consul", "session", id)
			ls.end()
			return
		case err == nil:
			if failing {
				k.log.Info("session renewed again", "session", id, "after", time.Since(lastOK).Round(time.Millisecond))
			}
			lastOK, wait, failing = time.Now(), renewEvery, false
		default:
			if time.Since(lastOK) > 2*sessionTTL {
				k.log.Error("our session is gone: no renewal for twice its TTL", "session", id, "err", err)
				ls.end()
				return
			}
			k.log.Warn("session renewal failed; retrying until its TTL is really gone", "session", id, "last_renewed", lastOK.Format(time.RFC3339Nano), "err", err)
			wait, failing = time.Second, true
		}
	}
}

// destroy stops renewing and destroys the session, best effort within 5s
// (Consul expires it within twice its TTL otherwise).
func (k *sessionKeeper) destroy() {
	k.mu.Lock()
	cur, stop := k.cur, k.stop
	k.cur, k.stop = nil, nil
	k.mu.Unlock()
	if stop != nil {
		stop()
	}
	if cur == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := k.client.Session().Destroy(cur.id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		k.log.Warn("could not destroy session; Consul will expire it within twice its TTL", "session", cur.id, "err", err)
	}
}
