package deploy

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const operationsDoc = "../docs/operations.md"

// documentedMetric is one name of the metrics table in docs/operations.md,
// with the labels and the type the table gives it.
type documentedMetric struct {
	name, kind string
	labels     []string
}

var tableMetric = regexp.MustCompile("`([a-z_]+)(?:\\{([a-z_,]*)\\})?`")

// metricsTable reads the table under "## Metrics": each row's first cell
// names one or more metrics, its second cell their types (one for all, or
// one per name in order).
func metricsTable(t *testing.T) []documentedMetric {
	t.Helper()
	f, err := os.Open(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []documentedMetric
	inSection, inTable := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inSection = line == "## Metrics"
			inTable = false
		case inSection && strings.HasPrefix(line, "| metric |"):
			inTable = true
		case inTable && strings.HasPrefix(line, "|---"):
		case inTable && strings.HasPrefix(line, "|"):
			cells := strings.Split(line, "|")
			if len(cells) < 4 {
				t.Fatalf("%s: a metrics row without three cells: %s", operationsDoc, line)
			}
			kinds := strings.Split(strings.TrimSpace(cells[2]), ", ")
			ms := tableMetric.FindAllStringSubmatch(cells[1], -1)
			for i, m := range ms {
				if strings.HasSuffix(m[1], "_") {
					continue // go_*, process_*: the client library's own
				}
				kind := kinds[0]
				if len(kinds) == len(ms) {
					kind = kinds[i]
				}
				var labels []string
				if m[2] != "" {
					labels = strings.Split(m[2], ",")
				}
				sort.Strings(labels)
				out = append(out, documentedMetric{name: m[1], kind: kind, labels: labels})
			}
		case inTable:
			inTable = false
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("%s: found %d metrics in the table under \"## Metrics\"; has its heading or header row changed?", operationsDoc, len(out))
	}
	return out
}

// Every metric docs/operations.md lists is registered by a real node with
// the labels and type the table gives and a HELP text, and every metric
// Lockstep registers is in the table: an operator's queries from the docs
// find what they name.
func TestOperationsDocListsEveryMetric(t *testing.T) {
	reg := registeredDescs(t)
	types := map[string]string{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		types[mf.GetName()] = strings.ToLower(mf.GetType().String())
	}
	documented := map[string]bool{}
	for _, m := range metricsTable(t) {
		documented[m.name] = true
		d, ok := reg.descs[m.name]
		if !ok {
			t.Errorf("%s lists %s, which no node registers", operationsDoc, m.name)
			continue
		}
		if d.help == "" {
			t.Errorf("%s has no HELP text", m.name)
		}
		if !slices.Equal(d.labels, m.labels) {
			t.Errorf("%s: the docs give labels %v, the code %v", m.name, m.labels, d.labels)
		}
		if got, ok := types[m.name]; ok && got != m.kind {
			t.Errorf("%s: the docs say %s, a scrape says %s", m.name, m.kind, got)
		}
	}
	for name := range reg.descs {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		if !documented[name] {
			t.Errorf("%s is registered and not in the metrics table of %s", name, operationsDoc)
		}
	}
}
