package transport

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestRefusalReasonsAreListed: every reason this package gives
// Observer.Refused is in RefusalReasons, from which the runtime's counter
// starts each series at 0 (an alert on an increase missed the first
// refusal of a reason never seen before).
func TestRefusalReasonsAreListed(t *testing.T) {
	src, err := os.ReadFile("transport.go")
	if err != nil {
		t.Fatal(err)
	}
	given := regexp.MustCompile(`\.Refused\("([^"]+)"\)`).FindAllSubmatch(src, -1)
	if len(given) < 5 {
		t.Fatalf("found %d literal reasons in transport.go: the pattern no longer matches the calls", len(given))
	}
	for _, m := range given {
		if !slices.Contains(RefusalReasons, string(m[1])) {
			t.Errorf("Refused(%q) is not in RefusalReasons", m[1])
		}
	}
	for _, r := range []string{refusedPeers, CutLostLog, CutRemoved, CutOtherReplica} {
		if !slices.Contains(RefusalReasons, r) {
			t.Errorf("%q is not in RefusalReasons", r)
		}
	}
}
