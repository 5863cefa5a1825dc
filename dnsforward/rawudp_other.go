//go:build !(linux && (amd64 || arm64))

package main

import (
	"context"
	"errors"
	"sync/atomic"
)

const rawSupported = false

func (s *Server) listenRaw() error { return errors.New("raw UDP sockets not supported here") }

func closeRaw(int) {}

func (s *Server) readRaw(context.Context, int, *atomic.Uint64) {}

func readerCPUs() []int { return nil }

func pinReader(int) (func(), error) { return func() {}, nil }
