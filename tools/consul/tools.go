//go:build tools

// Package tools pins the Consul binary used by berth's tests and demo.
package tools

import _ "github.com/hashicorp/consul"
