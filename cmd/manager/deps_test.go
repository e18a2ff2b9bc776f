package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestShippedBinaryLinksNoTestCode: the manager is the image config/default
// runs and the tools container of every build Job, so it links neither the
// testing package nor anything under test/ (the Heroku stand-in, the dyno
// runner, the fixtures), nor the local default built from them. The packages
// are listed for the image's platform, as the Dockerfile builds it.
func TestShippedBinaryLinksNoTestCode(t *testing.T) {
	const module = "github.com/herokunix/herokunix"
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/controllers") {
		t.Fatalf("go list -deps lacks %s/controllers, so it did not list the manager:\n%s", module, out)
	}
	for _, pkg := range deps {
		if pkg == "testing" || strings.HasPrefix(pkg, "testing/") ||
			strings.HasPrefix(pkg, module+"/test/") ||
			pkg == module+"/internal/localenv" ||
			pkg == "sigs.k8s.io/controller-runtime/pkg/envtest" {
			t.Errorf("the manager links %s", pkg)
		}
	}
}
