package main

// FerretDB v1.24's SQLite backend answers a filter on `_id` alone with
//
//	WHERE _ferretdb_sjson->'$._id' = ?
//
// but the unique index it creates for `_id` is on the expression
// `_ferretdb_sjson->"_id"`. SQLite only uses an expression index for the very same
// expression, so every lookup, update and delete by `_id` read the whole table (measured:
// 70 ms for one document in a 10,000-document collection, 2 ms with the index below).
//
// The indexer adds, to every collection table, an index on exactly the expression those
// statements use. It works beside FerretDB on the same SQLite files: FerretDB keeps its
// own index list in its metadata table and never sees this one, and dropping a
// collection drops its table together with the index.

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses, registered as "sqlite"
)

// idIndexSuffix names the added index: "<table>_lintas_id".
const idIndexSuffix = "_lintas_id"

// missingIndexTables lists collection tables that lack the `_id` expression index.
const missingIndexTables = `
SELECT t.name FROM sqlite_master AS t
WHERE t.type = 'table'
  AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
  AND t.name NOT LIKE '\_ferretdb\_%' ESCAPE '\'
  AND NOT EXISTS (
    SELECT 1 FROM sqlite_master AS i WHERE i.type = 'index' AND i.name = t.name || ?
  )`

// fileState is what a database file looked like when it was last indexed.
type fileState struct {
	main, wal time.Time
}

// idIndexer polls the SQLite directory and indexes new collection tables.
type idIndexer struct {
	dir    string
	logger *slog.Logger
	seen   map[string]fileState
}

// run indexes every `interval` until ctx is done.
func (x *idIndexer) run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()

	for {
		x.pass()

		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// pass looks at each database file that changed since it was last indexed.
func (x *idIndexer) pass() {
	files, err := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	if err != nil {
		x.logger.Warn("id indexer: cannot list databases", "error", err)
		return
	}

	for _, file := range files {
		state, ok := stateOf(file)
		if !ok || x.seen[file] == state {
			continue // gone, or unchanged since its tables were indexed
		}

		if err := indexFile(file, x.logger); err != nil {
			// A table dropped meanwhile or a busy database: the next pass tries again.
			x.logger.Debug("id indexer: will retry", "database", filepath.Base(file), "error", err)
			continue
		}

		x.seen[file] = state
	}
}

// stateOf returns the modification times of a database file and its write-ahead log.
func stateOf(file string) (fileState, bool) {
	main, err := os.Stat(file)
	if err != nil {
		return fileState{}, false
	}

	state := fileState{main: main.ModTime()}
	if wal, err := os.Stat(file + "-wal"); err == nil {
		state.wal = wal.ModTime()
	}

	return state, true
}

// indexFile adds the `_id` expression index to each collection table of one database.
// It opens and closes its own connection each time: FerretDB deletes the file when the
// database is dropped, and a kept connection would go on pointing at the deleted one.
func indexFile(file string, logger *slog.Logger) error {
	dsn := "file:" + (&url.URL{Path: file}).EscapedPath() + "?_pragma=busy_timeout(10000)"

	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	rows, err := db.Query(missingIndexTables, idIndexSuffix)
	if err != nil {
		return err
	}

	var tables []string

	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}

		tables = append(tables, name)
	}

	if err := rows.Close(); err != nil {
		return err
	}

	for _, table := range tables {
		q := fmt.Sprintf(
			`CREATE INDEX IF NOT EXISTS %s ON %s (_ferretdb_sjson->'$._id')`,
			quoteIdent(table+idIndexSuffix), quoteIdent(table),
		)
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("table %s: %w", table, err)
		}

		logger.Debug("id indexer: indexed", "database", filepath.Base(file), "table", table)
	}

	return nil
}

// quoteIdent quotes an SQLite identifier.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
