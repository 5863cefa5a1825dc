package eventually

import "github.com/berth/berth/pkg/syncbuffer"

// Buffer is the output or log of a process under test, which the test reads
// (String) while the process still writes, typically in a True or Holds
// condition. The zero value is an empty buffer.
type Buffer = syncbuffer.Buffer
