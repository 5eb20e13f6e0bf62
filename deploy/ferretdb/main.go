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
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

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
	flag.Parse()

	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("invalid -log-level %q: %w", *logLevel, err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	sqliteURL, err := sqliteURL(*sqliteDir)
	if err != nil {
		return err
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP: *listenAddr,
		},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Info("lintas-ferretdb starting", "listen_addr", *listenAddr, "sqlite_url", sqliteURL)

	// Run returns once ctx is canceled and all connections and the backend are closed.
	if err := f.Run(ctx); err != nil {
		return err
	}

	logger.Info("lintas-ferretdb stopped")

	return nil
}

// sqliteURL turns an existing absolute directory into the "file:/abs/dir/" URI that
// FerretDB's SQLite backend requires (the trailing slash is mandatory).
func sqliteURL(dir string) (string, error) {
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
	return "file:" + (&url.URL{Path: p}).EscapedPath(), nil
}
