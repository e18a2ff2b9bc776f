package argocd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/herokunix/herokunix/test/argocdlua"
)

// health runs health.lua the way Argo CD's Lua VM does (see test/argocdlua).
func health(t *testing.T, script string, obj *unstructured.Unstructured) (status, message string) {
	t.Helper()
	st, msg, err := argocdlua.Health(script, obj.Object)
	if err != nil {
		t.Fatalf("health.lua: %v", err)
	}
	return st, msg
}

// customizationDir is the health check and actions in the layout of Argo
// CD's resource_customizations/<group>/<Kind>/.
const customizationDir = "resource_customizations/herokunix.dev/HerokuNixApp"

func readScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(customizationDir, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestArgoCDHealth(t *testing.T) {
	script := readScript(t)
	valid := map[string]bool{healthy: true, progressing: true, degraded: true, suspended: true}
	for _, c := range statusCases(t) {
		t.Run(c.name, func(t *testing.T) {
			st, msg := health(t, script, c.unstructured(t))
			if !valid[st] {
				t.Fatalf("status %q is not one Argo CD knows", st)
			}
			if st != c.argo {
				t.Errorf("health = %s (%q), want %s", st, msg, c.argo)
			}
			if !strings.Contains(msg, c.argoMessage) {
				t.Errorf("message %q lacks %q", msg, c.argoMessage)
			}
		})
	}
}
