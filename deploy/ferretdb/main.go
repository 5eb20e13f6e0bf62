// Command lintas-ferretdb runs an embedded FerretDB v1 (SQLite backend) that speaks the
// MongoDB wire protocol on a TCP address, for local development and tests.
//
// FerretDB's own command cannot be installed with `go install` (it panics at start because
// its generated version file is not part of the module), hence this wrapper around the
// embeddable package github.com/FerretDB/FerretDB/ferretdb.
//
// Usage:
//
//	lintas-ferretdb -listen-addr 127.0.0.1:27017 -sqlite-dir /abs/path/
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only when -debug-addr is given
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "lintas-ferretdb: %s\n", err)
		os.Exit(1)
	}
}

func run() error {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	sqliteDir := flag.String("sqlite-dir", "", "existing absolute directory for the SQLite databases")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn or error")
	synchronous := flag.String(
		"sqlite-synchronous", "normal",
		"SQLite synchronous pragma: normal (commits survive a crash of this process, not of the machine) or full (every commit is fsynced)",
	)
	debugAddr := flag.String("debug-addr", "", "serve Go's pprof profiles on this address (off when empty)")
	slowMs := flag.Int("slow-ms", 1000, "log commands that take at least this many milliseconds (0: never)")
	gcPercent := flag.Int("gc-percent", 400, "Go's GOGC for this process: heap growth between collections, in percent (Go's default is 100; see tuneMemory)")
	memoryLimitMiB := flag.Int64("memory-limit-mib", 1024, "Go's soft memory limit in MiB: the collector works harder near it (0: none)")
	flag.Parse()

	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("invalid -log-level %q: %w", *logLevel, err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if err := tuneMemory(*gcPercent, *memoryLimitMiB); err != nil {
		return err
	}

	gogc, memoryLimit := memorySettings()
	logger.Info("go memory settings in effect", "gogc_percent", gogc, "memory_limit_bytes", memoryLimit)

	sqliteURL, err := sqliteURL(*sqliteDir, *synchronous)
	if err != nil {
		return err
	}

	// FerretDB listens on a private Unix socket; clients reach it through the write
	// proxy on the TCP address (see writeproxy.go).
	socket := filepath.Join(os.TempDir(), fmt.Sprintf("lintas-ferretdb-%d.sock", os.Getpid()))
	_ = os.Remove(socket)

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			Unix: socket,
		},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	if *debugAddr != "" {
		go func() {
			logger.Info("pprof listening", "addr", *debugAddr)
			if err := http.ListenAndServe(*debugAddr, nil); err != nil {
				logger.Error("pprof stopped", "error", err)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// See idindex.go: without it every lookup by _id reads the whole collection.
	indexer := &idIndexer{dir: *sqliteDir, logger: logger, seen: map[string]fileState{}}
	go indexer.run(ctx, 500*time.Millisecond)

	logger.Info("lintas-ferretdb starting", "listen_addr", *listenAddr, "sqlite_url", sqliteURL)

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }() // returns once ctx is canceled and all is closed

	if err := waitForSocket(ctx, socket, done); err != nil {
		return err
	}

	listener, err := net.Listen("tcp", *listenAddr)
	if err != nil {
		stop()
		<-done
		return err
	}

	go newWriteProxy(socket, logger, time.Duration(*slowMs)*time.Millisecond).serve(listener)

	select {
	case <-ctx.Done():
	case err := <-done:
		listener.Close()
		return err
	}

	listener.Close()

	if err := <-done; err != nil {
		return err
	}

	logger.Info("lintas-ferretdb stopped")

	return nil
}

// waitForSocket returns once FerretDB accepts connections on its socket, so the TCP
// address (which the launcher waits for) opens only when requests can be served.
func waitForSocket(ctx context.Context, socket string, done <-chan error) error {
	for {
		if conn, err := net.Dial("unix", socket); err == nil {
			conn.Close()
			return nil
		}

		select {
		case err := <-done:
			return fmt.Errorf("FerretDB stopped before it listened: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sqliteURL turns an existing absolute directory into the "file:/abs/dir/" URI that
// FerretDB's SQLite backend requires (the trailing slash is mandatory).
//
// FerretDB runs SQLite in WAL mode with SQLite's default synchronous=FULL, which fsyncs
// the log on every commit: the Lintas pipeline makes a few dozen small commits per case,
// and on these machines the disk, not the CPU, then set the pace. With synchronous=NORMAL
// a commit survives the death of this process (what the fault tests inflict) but the
// last commits may be lost if the machine itself stops; fine for a dev and test server.
func sqliteURL(dir, synchronous string) (string, error) {
	if synchronous != "normal" && synchronous != "full" {
		return "", fmt.Errorf("-sqlite-synchronous must be normal or full, got %q", synchronous)
	}

	if dir == "" {
		return "", fmt.Errorf("-sqlite-dir is required")
	}

	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("-sqlite-dir must be an absolute path, got %q", dir)
	}

	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("-sqlite-dir: %w", err)
	}

	if !fi.IsDir() {
		return "", fmt.Errorf("-sqlite-dir %q is not a directory", dir)
	}

	p := filepath.ToSlash(filepath.Clean(dir))
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}

	// Escape the path so that spaces, '%', '?' or '#' in it survive url.Parse in FerretDB.
	return "file:" + (&url.URL{Path: p}).EscapedPath() + "?_pragma=synchronous(" + synchronous + ")", nil
}

// tuneMemory sets the collector's pace. FerretDB allocates a lot per command (documents
// decoded from and encoded to their stored JSON) and keeps little: with Go's default
// GOGC=100 its live heap of a few dozen MiB was collected over and over, and the collector
// and allocation took about a fifth of its CPU (make bench's profile). At 400 it runs a
// quarter as often: measured on the pipeline at 15 cases/s, FerretDB's CPU a case fell
// from 43 to 34 ms for about 10 MiB more memory (800 and 1600 saved no more). The soft
// limit bounds what a long import may make it hold.
func tuneMemory(gcPercent int, memoryLimitMiB int64) error {
	if gcPercent < 1 {
		return fmt.Errorf("-gc-percent must be at least 1, got %d", gcPercent)
	}

	if memoryLimitMiB < 0 {
		return fmt.Errorf("-memory-limit-mib must not be negative, got %d", memoryLimitMiB)
	}

	debug.SetGCPercent(gcPercent)

	if memoryLimitMiB > 0 {
		debug.SetMemoryLimit(memoryLimitMiB << 20)
	}

	return nil
}

// memorySettings reads back from the runtime the GOGC and soft memory limit in effect.
func memorySettings() (uint64, uint64) {
	samples := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(samples)

	return samples[0].Value.Uint64(), samples[1].Value.Uint64()
}
