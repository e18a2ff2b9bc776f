package nixbuild

import "testing"

func TestNarHashRevision(t *testing.T) {
	for locked, want := range map[string]string{
		"path:/tmp/x?lastModified=1795634214&narHash=sha256-3MV1SlBW32%2fufJbZeB5FXn4Yu%2fGCz6m5uY3lCJkT454=": "dcc5754a5056df6fee7c96d9781e455e7e18bbf182cfa9b9b98de5089913e39e",
		"github:acme/shop/0123456789abcdef0123456789abcdef01234567":                                           "",
		"path:/tmp/x?narHash=md5-abc":    "",
		"path:/tmp/x?narHash=sha256-%%%": "",
	} {
		if got := narHashRevision(locked); got != want {
			t.Errorf("narHashRevision(%q) = %q, want %q", locked, got, want)
		}
	}
}
