package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/berth/berth/pkg/consultest"
)

// overlapLog is the shared file children append "enter ID TOKEN" and
// "exit ID" lines to; each line is one O_APPEND write, so the file's order is
// the order in which the children held the lock.
const childScript = `echo "enter $$ $LOCKRUN_TOKEN" >> %[1]s; sleep 0.02; echo "exit $$" >> %[1]s`

type overlap struct {
	max    int
	tokens []uint64
	enters int
}

func readOverlap(t *testing.T, path string) overlap {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var o overlap
	cur := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch fields[0] {
		case "enter":
			cur++
			o.enters++
			if cur > o.max {
				o.max = cur
			}
			if len(fields) == 3 {
				tok, err := strconv.ParseUint(fields[2], 10, 64)
				if err != nil {
					t.Fatalf("bad token in %q", sc.Text())
				}
				o.tokens = append(o.tokens, tok)
			}
		case "exit":
			cur--
		}
	}
	return o
}

// contend runs procs processes each running `runs` times in a row.
func contend(t *testing.T, a *consultest.Agent, procs, runs int, argsFor func(i int) (string, []string)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, procs*runs)
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for r := 0; r < runs; r++ {
				bin, args := argsFor(p)
				cmd := command(a, bin, args...)
				var errb bytes.Buffer
				cmd.Stderr = &errb
				if err := cmd.Run(); err != nil {
					errs <- fmt.Sprintf("%s %v: %v: %s", filepath.Base(bin), args, err, errb.String())
					return
				}
			}
		}(p)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestSemaphoreMutualExclusion(t *testing.T) {
	a := consultest.Require(t, agent)
	log := filepath.Join(t.TempDir(), "log")
	contend(t, a, 5, 20, func(int) (string, []string) {
		return lockrunB, []string{"-n", "2", "test/sem-excl", fmt.Sprintf(childScript, log)}
	})
	o := readOverlap(t, log)
	if o.enters != 100 {
		t.Fatalf("%d runs entered, want 100", o.enters)
	}
	if o.max > 2 {
		t.Fatalf("%d holders overlapped, semaphore allows 2", o.max)
	}
	if o.max < 2 {
		t.Logf("note: never saw 2 holders at once")
	}
}

func TestLockExclusionAndIncreasingTokens(t *testing.T) {
	a := consultest.Require(t, agent)
	log := filepath.Join(t.TempDir(), "log")
	contend(t, a, 3, 10, func(int) (string, []string) {
		return lockrunB, []string{"test/lock-excl", fmt.Sprintf(childScript, log)}
	})
	o := readOverlap(t, log)
	if o.enters != 30 || o.max != 1 {
		t.Fatalf("%d runs, max overlap %d; want 30 and 1", o.enters, o.max)
	}
	for i := 1; i < len(o.tokens); i++ {
		if o.tokens[i] <= o.tokens[i-1] {
			t.Fatalf("fencing tokens not strictly increasing: %v", o.tokens)
		}
	}
	// The key was deleted after each run (nobody waiting), yet tokens grew.
	// Delete it explicitly too and check the next token is still higher.
	if _, err := a.Client().KV().Delete("test/lock-excl/.lock", nil); err != nil {
		t.Fatal(err)
	}
	r := runLR(t, a, "test/lock-excl", `echo $LOCKRUN_TOKEN`)
	tok, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
	if err != nil || tok <= o.tokens[len(o.tokens)-1] {
		t.Fatalf("token after key deletion %q (err %v), last before %d", r.stdout, err, o.tokens[len(o.tokens)-1])
	}
}

func TestInteropWithConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			prefix := fmt.Sprintf("test/interop-%d", n)
			script := fmt.Sprintf(`echo "enter $$" >> %[1]s; sleep 0.03; echo "exit $$" >> %[1]s`, log)
			contend(t, a, 4, 6, func(p int) (string, []string) {
				if p%2 == 0 {
					return a.Bin, []string{"lock", "-n", strconv.Itoa(n), prefix, script}
				}
				return lockrunB, []string{"-n", strconv.Itoa(n), prefix, script}
			})
			o := readOverlap(t, log)
			if o.enters != 24 || o.max > n {
				t.Fatalf("%d runs, max overlap %d; want 24 and at most %d", o.enters, o.max, n)
			}
		})
	}
}
