package core_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The purity check keeps core (and everything below it, such as
// core/replica) a function of its inputs: the simulator's determinism and
// the replicas' agreement both depend on it. It parses the non-test Go files
// and refuses imports outside the standard library, imports that reach the
// outside world or a source of nondeterminism, clock reads and sleeps, and go
// statements.

// forbiddenImports reach a clock, randomness, the OS, the network or shared
// memory between goroutines.
var forbiddenImports = map[string]string{
	"math/rand":    "randomness",
	"math/rand/v2": "randomness",
	"crypto/rand":  "randomness",
	"sync":         "goroutines",
	"sync/atomic":  "goroutines",
	"os":           "the operating system",
	"os/exec":      "the operating system",
	"os/signal":    "the operating system",
	"syscall":      "the operating system",
	"net":          "the network",
	"net/http":     "the network",
	"unsafe":       "memory outside the type system",
	"log":          "logging (return effects instead)",
	"log/slog":     "logging (return effects instead)",
	"runtime":      "the Go runtime",
}

// forbiddenTimeCalls read or wait on the wall clock; time.Duration and
// friends stay allowed.
var forbiddenTimeCalls = map[string]bool{
	"Now": true, "Sleep": true, "Since": true, "Until": true, "After": true, "AfterFunc": true,
	"Tick": true, "NewTicker": true, "NewTimer": true,
}

func checkPurity(t *testing.T, root string) []string {
	t.Helper()
	var problems []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".go.txt") {
			return nil
		}
		if strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		problems = append(problems, checkFile(fset, f)...)
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	sort.Strings(problems)
	return problems
}

func checkFile(fset *token.FileSet, f *ast.File) []string {
	var problems []string
	report := func(pos token.Pos, format string, args ...any) {
		problems = append(problems, fset.Position(pos).String()+": "+fmt.Sprintf(format, args...))
	}
	timeName := ""
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		first := strings.SplitN(path, "/", 2)[0]
		switch {
		case strings.Contains(first, ".") && !strings.HasPrefix(path, "github.com/lockstepd/lockstep/core"):
			report(imp.Pos(), "imports %s, outside the standard library", path)
		case forbiddenImports[path] != "":
			report(imp.Pos(), "imports %s, which reaches %s", path, forbiddenImports[path])
		case path == "time":
			timeName = "time"
			if imp.Name != nil {
				timeName = imp.Name.Name
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			report(n.Pos(), "starts a goroutine")
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && timeName != "" && id.Name == timeName && forbiddenTimeCalls[n.Sel.Name] {
				report(n.Pos(), "calls time.%s: time must arrive in log entries", n.Sel.Name)
			}
		}
		return true
	})
	return problems
}

// TestPurity checks core and its sub-packages.
func TestPurity(t *testing.T) {
	if _, err := os.Stat("../core"); err != nil {
		t.Fatalf("run from the core folder: %v", err)
	}
	for _, p := range checkPurity(t, ".") {
		t.Errorf("core is not pure: %s", p)
	}
}

// TestPurityCheckCatches proves the check can fail: a fixture with one of
// each forbidden thing must be reported once per thing.
func TestPurityCheckCatches(t *testing.T) {
	problems := checkPurity(t, filepath.Join("testdata", "purity", "impure"))
	want := []string{
		"outside the standard library",
		"math/rand", "crypto/rand", "sync", "os,", "net,",
		"time.Now", "time.Sleep",
		"starts a goroutine",
	}
	joined := strings.Join(problems, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("the purity check missed %q in the fixture; it reported:\n%s", w, joined)
		}
	}
	if len(problems) != len(want) {
		t.Errorf("the purity check reported %d problems, want %d:\n%s", len(problems), len(want), joined)
	}
}
