// Package localenv is herokunix's embedded local default: everything the
// controller needs, on this machine, with nothing configured. It starts a
// local control plane (the envtest kube-apiserver and etcd), the Heroku
// stand-in (Platform API and registry) on loopback, and deploys the sample
// HerokuNixApp, built from a fixture flake with the local Nix.
//
// It is built from test stand-ins (test/herokustub, test/dyno,
// test/fixtures), so only developer tools import it (cmd/local behind
// `make run`, hack/bench-controller) and tests; never cmd/manager.
package localenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/kubetable"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/herokustub"
)

// Options configure Start.
type Options struct {
	Log logr.Logger
	// RepoRoot is the herokunix checkout (default: the working directory);
	// the CRDs, the sample, the fixtures and hack/ are read from it.
	RepoRoot string
}

// Env is a running local default.
type Env struct {
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for Config, for a
	// controller run as another process.
	Kubeconfig   string
	HerokuAPIURL string
	RegistryHost string
	Stub         *herokustub.Server

	apiKey  string
	root    string
	log     logr.Logger
	dir     string // the kubeconfig and the sample's flake; removed by Stop
	control *envtest.Environment
	servers []*http.Server
	client  client.Client
}

// Start brings the local default up.
func Start(ctx context.Context, opts Options) (*Env, error) {
	root := opts.RepoRoot
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		root = wd
	}
	dir, err := os.MkdirTemp("", "herokunix-local-")
	if err != nil {
		return nil, err
	}
	e := &Env{root: root, log: opts.Log, apiKey: randomKey(), dir: dir}
	if err := e.startControlPlane(); err != nil {
		e.Stop()
		return nil, err
	}
	// The stand-in runs what it releases, as Heroku would: the web dyno
	// (with $PORT) and the release phase, so Ready means serving here too.
	e.Stub = herokustub.New(herokustub.Options{APIKey: e.apiKey, RunImages: true, DynoDir: dir})
	api, err := e.serve(e.Stub.APIHandler())
	if err != nil {
		e.Stop()
		return nil, err
	}
	reg, err := e.serve(e.Stub.RegistryHandler())
	if err != nil {
		e.Stop()
		return nil, err
	}
	e.HerokuAPIURL, e.RegistryHost = "http://"+api, reg
	e.log.Info("local default is up", "apiServer", e.Config.Host, "heroku", e.HerokuAPIURL, "registry", e.RegistryHost)
	return e, nil
}

// NewControlPlane is a local kube-apiserver and etcd with herokunix's CRD,
// not started yet. Unless KUBEBUILDER_ASSETS names them already, the
// binaries come from hack/envtest-assets.sh under root (the herokunix
// checkout), which builds them the first time (about 10 minutes).
func NewControlPlane(root string) (*envtest.Environment, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		cmd := exec.Command(filepath.Join(root, "hack", "envtest-assets.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("hack/envtest-assets.sh: %w", err)
		}
		if err := os.Setenv("KUBEBUILDER_ASSETS", strings.TrimSpace(string(out))); err != nil {
			return nil, err
		}
	}
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}, nil
}

func (e *Env) startControlPlane() error {
	control, err := NewControlPlane(e.root)
	if err != nil {
		return err
	}
	cfg, err := control.Start()
	if err != nil {
		return fmt.Errorf("starting the local control plane: %w", err)
	}
	e.control, e.Config = control, cfg
	if err := e.writeKubeconfig(); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = herokunixv1.AddToScheme(scheme)
	e.client, err = client.New(cfg, client.Options{Scheme: scheme})
	return err
}

// writeKubeconfig writes Kubeconfig for a cluster-admin user of the local
// control plane.
func (e *Env) writeKubeconfig() error {
	user, err := e.control.AddUser(envtest.User{Name: "herokunix-local", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding a user to the local control plane: %w", err)
	}
	b, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing a kubeconfig for the local control plane: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	return os.WriteFile(e.Kubeconfig, b, 0o600)
}

// serve runs h on a loopback port and returns host:port.
func (e *Env) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listening on loopback: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	e.servers = append(e.servers, srv)
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), nil
}

// Stop shuts everything down.
func (e *Env) Stop() {
	if e.Stub != nil {
		e.Stub.Close()
	}
	for _, s := range e.servers {
		_ = s.Close()
	}
	if e.control != nil {
		if err := e.control.Stop(); err != nil {
			e.log.Error(err, "stopping the local control plane")
		}
	}
	_ = os.RemoveAll(e.dir)
}

// DeploySample creates the sample's Heroku app and API-key Secret, applies
// config/samples with its flake pointed at the closure fixture, waits for
// Ready and prints the resource as `kubectl get herokunixapps` does.
func (e *Env) DeploySample(ctx context.Context, out io.Writer) error {
	b, err := os.ReadFile(filepath.Join(e.root, "config", "samples", "herokunix_v1alpha1_herokunixapp.yaml"))
	if err != nil {
		return err
	}
	var app herokunixv1.HerokuNixApp
	if err := yaml.UnmarshalStrict(b, &app); err != nil {
		return fmt.Errorf("parsing the sample: %w", err)
	}
	flake, err := fixtures.PrepareIn(e.dir, fixtures.Closure)
	if err != nil {
		return fmt.Errorf("preparing the sample flake: %w", err)
	}
	app.Namespace = "default"
	app.Spec.Flake = flake
	e.Stub.CreateApp(app.Spec.AppName, "container")

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: app.Spec.CredentialsSecretRef.Name, Namespace: app.Namespace},
		StringData: map[string]string{app.Spec.CredentialsSecretRef.Key: e.apiKey},
	}
	if err := e.client.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating the API-key Secret: %w", err)
	}
	if err := e.createConfigSecrets(ctx, &app); err != nil {
		return err
	}
	if err := e.client.Create(ctx, &app); err != nil {
		return fmt.Errorf("applying the sample: %w", err)
	}
	fmt.Fprintf(out, "applied herokunixapp/%s (flake %s, Heroku app %s); building with Nix…\n", app.Name, flake, app.Spec.AppName)

	var lastReason string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := e.client.Get(ctx, client.ObjectKeyFromObject(&app), &app); err != nil {
			return false, err
		}
		ready := meta.FindStatusCondition(app.Status.Conditions, herokunixv1.ConditionReady)
		if ready == nil || ready.Reason == lastReason {
			return false, nil
		}
		lastReason = ready.Reason
		e.printTable(ctx, out, app.Namespace, false)
		if meta.IsStatusConditionTrue(app.Status.Conditions, herokunixv1.ConditionStalled) {
			return false, fmt.Errorf("the sample stalled: %s: %s", ready.Reason, ready.Message)
		}
		return ready.Status == metav1.ConditionTrue && app.Status.ObservedGeneration == app.Generation, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the sample to become Ready: %w", err)
	}
	e.printTable(ctx, out, app.Namespace, true)
	e.printEvents(ctx, out, &app)
	rels := e.Stub.Releases(app.Spec.AppName)
	if len(rels) == 0 {
		return errors.New("the sample is Ready but the Heroku stand-in has no release")
	}
	cur := rels[len(rels)-1]
	fmt.Fprintf(out, "\nHeroku stand-in: app %s runs release v%d (%s), images %v\n", app.Spec.AppName, cur.Version, cur.Status, cur.Images)
	if err := e.printConfigVars(ctx, out, &app); err != nil {
		return err
	}
	return e.askWebDyno(ctx, out, &app)
}

// createConfigSecrets makes the Secrets the sample's spec.config reads,
// each key holding a made-up value, as a user would before applying it.
func (e *Env) createConfigSecrets(ctx context.Context, app *herokunixv1.HerokuNixApp) error {
	data := map[string]map[string]string{}
	for _, v := range app.Spec.Config {
		if v.ValueFrom == nil || v.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := v.ValueFrom.SecretKeyRef
		if data[ref.Name] == nil {
			data[ref.Name] = map[string]string{}
		}
		data[ref.Name][ref.Key] = "local-" + randomKey()[:8]
	}
	for name, kv := range data {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: app.Namespace}, StringData: kv}
		if err := e.client.Create(ctx, s); err != nil {
			return fmt.Errorf("creating the sample's config Secret %s: %w", name, err)
		}
	}
	return nil
}

// printConfigVars shows which config vars herokunix set on the stand-in's
// app and checks each holds its Secret's value (named, never printed).
func (e *Env) printConfigVars(ctx context.Context, out io.Writer, app *herokunixv1.HerokuNixApp) error {
	vars := e.Stub.ConfigVars(app.Spec.AppName)
	for _, v := range app.Spec.Config {
		got, ok := vars[v.Name]
		if !ok {
			return fmt.Errorf("the sample is Ready but config var %s is not set on the Heroku stand-in", v.Name)
		}
		from := "a literal value"
		if v.Value != nil && got != *v.Value {
			return fmt.Errorf("config var %s on the Heroku stand-in is not the sample's value", v.Name)
		}
		if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
			ref := v.ValueFrom.SecretKeyRef
			var s corev1.Secret
			if err := e.client.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: ref.Name}, &s); err != nil {
				return err
			}
			if string(s.Data[ref.Key]) != got {
				return fmt.Errorf("config var %s on the Heroku stand-in does not hold the value of Secret %s key %s", v.Name, ref.Name, ref.Key)
			}
			from = fmt.Sprintf("the value of Secret %s/%s key %s", app.Namespace, ref.Name, ref.Key)
		}
		fmt.Fprintf(out, "Heroku stand-in: config var %s is set to %s (values are never printed or stored on status)\n", v.Name, from)
	}
	return nil
}

// askWebDyno asks the web dyno the stand-in runs for the release (its
// image's entrypoint, started locally with $PORT) for "/", as Heroku's
// router would.
func (e *Env) askWebDyno(ctx context.Context, out io.Writer, app *herokunixv1.HerokuNixApp) error {
	if _, ok := app.Status.Images["web"]; !ok {
		return nil
	}
	for _, d := range e.Stub.Dynos(app.Spec.AppName) {
		if d.Type != "web" || d.State != herokustub.DynoUp {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+"/", nil)
		if err != nil {
			return err
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return fmt.Errorf("asking web dyno %s: %w", d.Name, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("asking web dyno %s: %w", d.Name, err)
		}
		fmt.Fprintf(out, "web dyno %s (release v%d) is %s, serving: GET / -> %q\n", d.Name, d.ReleaseVersion, d.State, body)
		return nil
	}
	return fmt.Errorf("the sample is Ready but the stand-in runs no web dyno that is up: %+v", e.Stub.Dynos(app.Spec.AppName))
}

// printTable shows the resources as `kubectl get herokunixapps` would,
// from the API server's own Table (printer columns).
func (e *Env) printTable(ctx context.Context, out io.Writer, namespace string, wide bool) {
	t, err := kubetable.Get(ctx, e.Config, herokunixv1.GroupVersion.WithResource("herokunixapps"), namespace)
	if err != nil {
		e.log.Error(err, "listing herokunixapps as a table")
		return
	}
	cmd := "\n$ kubectl get herokunixapps"
	if wide {
		cmd += " -o wide"
	}
	fmt.Fprintln(out, cmd)
	_ = kubetable.Print(out, t, wide)
}

// printEvents shows the resource's events, oldest first, as the Events
// section of `kubectl describe` does: the story of the deploy.
func (e *Env) printEvents(ctx context.Context, out io.Writer, app *herokunixv1.HerokuNixApp) {
	var list eventsv1.EventList
	if err := e.client.List(ctx, &list, client.InNamespace(app.Namespace)); err != nil {
		e.log.Error(err, "listing events")
		return
	}
	evs := slices.DeleteFunc(list.Items, func(ev eventsv1.Event) bool { return ev.Regarding.UID != app.UID })
	slices.SortStableFunc(evs, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
	fmt.Fprintf(out, "\n$ kubectl describe herokunixapp %s   # Events:\n", app.Name)
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tREASON\tMESSAGE")
	for _, ev := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ev.Type, ev.Reason, ev.Note)
	}
	_ = tw.Flush()
}

func randomKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
