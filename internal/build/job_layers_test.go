package build

import (
	"slices"
	"testing"
	"time"

	"k8s.io/utils/ptr"
)

// The resource's layer budget reaches the push container, which makes the
// images; without one the push's own default applies.
func TestDesiredJobPassesTheLayerBudgetToThePush(t *testing.T) {
	for _, tc := range []struct {
		budget *int32
		want   []string
	}{
		{ptr.To[int32](40), []string{"--max-layers", "40"}},
		{nil, nil},
	} {
		app := testApp()
		app.Spec.Build.MaxLayers = tc.budget
		job, err := DesiredJob(app, DesiredFor(app, time.Now(), false), JobImages{Tools: "tools:1", Nix: "nix:1", RegistryHost: "registry.heroku.com"})
		if err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, c := range job.Spec.Template.Spec.Containers {
			if c.Name == containerPush {
				args = c.Args
			}
		}
		i := slices.Index(args, "--max-layers")
		switch {
		case tc.want == nil && i >= 0:
			t.Errorf("push args %q name a layer budget the resource does not set", args)
		case tc.want != nil && (i < 0 || !slices.Equal(args[i:i+2], tc.want)):
			t.Errorf("push args %q, want %q among them", args, tc.want)
		}
	}
}

// A manager told to speak plain HTTP to the registry tells its build
// Jobs' push so; one that is not, does not (Heroku's registry is HTTPS).
func TestDesiredJobPassesInsecureRegistryToThePush(t *testing.T) {
	for _, insecure := range []bool{true, false} {
		app := testApp()
		job, err := DesiredJob(app, DesiredFor(app, time.Now(), false),
			JobImages{Tools: "tools:1", Nix: "nix:1", RegistryHost: "10.0.0.1:5000", InsecureRegistry: insecure})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range job.Spec.Template.Spec.Containers {
			if got := slices.Contains(c.Args, "--insecure-registry"); c.Name == containerPush && got != insecure {
				t.Errorf("with InsecureRegistry=%v the push args are %q", insecure, c.Args)
			}
		}
	}
}
