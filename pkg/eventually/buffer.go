package eventually

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that several goroutines may use at once: the
// output or log of a process under test, which the test reads (String)
// while the process still writes, typically in a True or Holds condition.
// The zero value is an empty buffer.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
