package main

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/build"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
	"github.com/herokunix/herokunix/test/herokustub"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// managerBinary builds this command once per test run.
func managerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herokunix-manager-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "manager")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the manager: %v", buildErr)
	}
	return binPath
}

// TestBuildJobContainersRunAsTheJobRunsThem runs the three containers of a
// desired build Job, in order, as processes with exactly the Job's
// arguments (paths mapped to temporary directories) and the environment
// the kubelet would give them: the key only to push. The push's
// termination message must be a result the controller accepts, naming an
// image the Heroku registry stand-in holds.
func TestBuildJobContainersRunAsTheJobRunsThem(t *testing.T) {
	fixturestest.RequireNix(t)
	bin := managerBinary(t)
	const key, appName = "job-test-key", "acme-shop"
	stub := herokustub.New(herokustub.Options{APIKey: key})
	stub.CreateApp(appName, "container")
	reg := httptest.NewServer(stub.RegistryHandler())
	t.Cleanup(func() { stub.Close(); reg.Close() })

	app := &herokunixv1.HerokuNixApp{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team-a"},
		Spec: herokunixv1.HerokuNixAppSpec{
			AppName:              appName,
			Flake:                fixturestest.Prepare(t, fixtures.Closure),
			Processes:            map[string]herokunixv1.Process{"web": {Attribute: "packages.x86_64-linux.web", Command: []string{"bin/server"}}},
			CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"},
		},
	}
	job, err := build.DesiredJob(app, build.DesiredFor(app, time.Now(), false),
		build.JobImages{Tools: "tools", Nix: "nix", RegistryHost: strings.TrimPrefix(reg.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}

	tmp := t.TempDir()
	paths := map[string]string{ // mount path in the pod -> directory here
		"/workspace": filepath.Join(tmp, "workspace"), "/herokunix": filepath.Join(tmp, "tools"),
		corev1.TerminationMessagePathDefault: filepath.Join(tmp, "termination-log"),
	}
	for _, d := range []string{paths["/workspace"], paths["/herokunix"]} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mapPaths := func(args []string) []string {
		out := slices.Clone(args)
		for i, a := range out {
			for from, to := range paths {
				if a == from || strings.HasPrefix(a, from+"/") {
					out[i] = to + strings.TrimPrefix(a, from)
				}
			}
		}
		return out
	}
	pod := job.Spec.Template.Spec
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		// The image's entrypoint is the manager, unless the container names
		// another command (the build runs the copy tools installed).
		argv := append(mapPaths(c.Command), mapPaths(c.Args)...)
		if len(c.Command) == 0 {
			argv = append([]string{bin}, argv...)
		}
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp, "NIX_CONFIG=substituters ="}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "heroku" {
				env = append(env, e.Name+"="+key) // what the kubelet resolves the secretKeyRef to
			}
		}
		cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("container %s (%q): %v\n%s", c.Name, argv, err, out)
		}
	}

	msg, err := os.ReadFile(paths[corev1.TerminationMessagePathDefault])
	if err != nil {
		t.Fatal(err)
	}
	res, err := artifact.ParseResult(msg)
	if err != nil {
		t.Fatalf("the push's termination message is not a result: %v\n%s", err, msg)
	}
	if !slices.Contains(stub.Pushed(appName+"/web"), res.Images["web"].ImageID) {
		t.Errorf("the registry lacks the image %s the result names", res.Images["web"].ImageID)
	}
}

func TestBuildRefusesToRunWithTheKey(t *testing.T) {
	cmd := exec.Command(managerBinary(t), "build", "--request", `{"flake":"path:/x","processes":{}}`, "--workspace", t.TempDir())
	cmd.Env = []string{"HEROKU_API_KEY=secret", "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to run Nix with HEROKU_API_KEY") {
		t.Errorf("manager build with the key in its environment: %v\n%s", err, out)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
