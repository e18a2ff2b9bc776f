package envtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/kubetable"
	"github.com/herokunix/herokunix/internal/nixbuild"
)

func validApp(ns string) *herokunixv1.HerokuNixApp {
	return &herokunixv1.HerokuNixApp{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: herokunixv1.HerokuNixAppSpec{
			AppName: "acme-shop",
			Flake:   "github:acme/shop?ref=main",
			Processes: map[string]herokunixv1.Process{
				"web": {Attribute: "packages.x86_64-linux.web", Quantity: ptr.To[int32](2), Size: "standard-1X"},
			},
			CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"},
		},
	}
}

func TestSampleIsAccepted(t *testing.T) {
	ns := newNamespace(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "herokunix_v1alpha1_herokunixapp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var app herokunixv1.HerokuNixApp
	if err := yaml.UnmarshalStrict(b, &app); err != nil {
		t.Fatalf("sample does not parse: %v", err)
	}
	app.Namespace = ns
	if err := k8sClient.Create(context.Background(), &app); err != nil {
		t.Fatalf("sample refused: %v", err)
	}
	if app.Spec.IntervalDuration() != 10*time.Minute || app.Spec.Interval == nil || app.Spec.DeletionPolicy != herokunixv1.DeletionPolicyRetain {
		t.Errorf("defaults not applied: interval=%v deletionPolicy=%q", app.Spec.Interval, app.Spec.DeletionPolicy)
	}
}

func TestInvalidSpecsAreRefusedNamingTheField(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name   string
		mutate func(*herokunixv1.HerokuNixApp)
		field  string
	}{
		{"app name shorter than three characters", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = "ab" }, "spec.appName"},
		{"app name longer than thirty characters", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = strings.Repeat("a", 31) }, "spec.appName"},
		{"app name with upper case", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = "Acme-shop" }, "spec.appName"},
		{"app name starting with a digit", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = "1shop" }, "spec.appName"},
		{"missing app name", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = "" }, "spec.appName"},
		{"app name ending with a dash", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = "acme-shop-" }, "spec.appName"},
		{"app name with an underscore", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = "acme_shop" }, "spec.appName"},
		{"app name starting with a dash", func(a *herokunixv1.HerokuNixApp) { a.Spec.AppName = "-acme-shop" }, "spec.appName"},
		{"empty flake", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "" }, "spec.flake"},
		{"flake with whitespace", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "github:acme/shop --impure" }, "spec.flake"},
		{"flake with a control character", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "github:acme/shop\x07" }, "spec.flake"},
		{"flake longer than 1024 characters", func(a *herokunixv1.HerokuNixApp) { a.Spec.Flake = "github:" + strings.Repeat("a", 1024) }, "spec.flake"},
		{"no processes", func(a *herokunixv1.HerokuNixApp) { a.Spec.Processes = map[string]herokunixv1.Process{} }, "spec.processes"},
		{"process type with upper case", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes = map[string]herokunixv1.Process{"Web": {Attribute: "web"}}
		}, "spec.processes"},
		{"process type with a dot", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes = map[string]herokunixv1.Process{"web.1": {Attribute: "web"}}
		}, "spec.processes"},
		// An attribute is optional in the schema (a promotion sets none),
		// so building without one is refused on spec.processes by CEL.
		{"empty attribute", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes = map[string]herokunixv1.Process{"web": {}}
		}, "spec.processes"},
		{"promoteFrom and flake", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.PromoteFrom = &herokunixv1.PromotionSource{Name: "staging"}
		}, "spec.flake"},
		{"promoteFrom with build options", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Flake, a.Spec.Processes = "", nil
			a.Spec.PromoteFrom = &herokunixv1.PromotionSource{Name: "staging"}
			a.Spec.Build.Image = "nixos/nix:2.24.9"
		}, "spec.build"},
		{"promoteFrom with a process attribute", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Flake = ""
			a.Spec.PromoteFrom = &herokunixv1.PromotionSource{Name: "staging"}
		}, "spec.processes"},
		{"promoteFrom naming the resource itself", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Flake, a.Spec.Processes = "", nil
			a.Spec.PromoteFrom = &herokunixv1.PromotionSource{Name: a.Name}
		}, "spec.promoteFrom.name"},
		{"config var named like Heroku's own", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Config = []herokunixv1.ConfigVar{{Name: "HEROKU_API_KEY", Value: ptr.To("x")}}
		}, "spec.config[0].name"},
		{"config var name with a hyphen", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Config = []herokunixv1.ConfigVar{{Name: "LOG-LEVEL", Value: ptr.To("x")}}
		}, "spec.config[0].name"},
		{"config var name starting with two underscores", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Config = []herokunixv1.ConfigVar{{Name: "__X", Value: ptr.To("x")}}
		}, "spec.config[0].name"},
		{"config var with a value and a source", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Config = []herokunixv1.ConfigVar{{Name: "X", Value: ptr.To("x"),
				ValueFrom: &herokunixv1.ConfigVarSource{SecretKeyRef: &herokunixv1.KeyRef{Name: "s", Key: "k"}}}}
		}, "spec.config[0]"},
		{"config var from a Secret and a ConfigMap", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Config = []herokunixv1.ConfigVar{{Name: "X", ValueFrom: &herokunixv1.ConfigVarSource{
				SecretKeyRef: &herokunixv1.KeyRef{Name: "s", Key: "k"}, ConfigMapKeyRef: &herokunixv1.KeyRef{Name: "c", Key: "k"}}}}
		}, "spec.config[0].valueFrom"},
		{"config var read from the credentials Secret", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Config = []herokunixv1.ConfigVar{{Name: "TOKEN", ValueFrom: &herokunixv1.ConfigVarSource{SecretKeyRef: &herokunixv1.KeyRef{Name: "heroku", Key: "other"}}}}
		}, "spec.config"},
		{"the same config var twice", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Config = []herokunixv1.ConfigVar{{Name: "X", Value: ptr.To("1")}, {Name: "X", Value: ptr.To("2")}}
		}, "spec.config[1]"},
		{"attribute that reads as a Nix option", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes = map[string]herokunixv1.Process{"web": {Attribute: "--impure"}}
		}, "spec.processes.web.attribute"},
		{"negative quantity", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes = map[string]herokunixv1.Process{"web": {Attribute: "web", Quantity: ptr.To[int32](-1)}}
		}, "spec.processes.web.quantity"},
		{"unknown output kind", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Processes = map[string]herokunixv1.Process{"web": {Attribute: "web", Kind: "oci"}}
		}, "spec.processes.web.kind"},
		{"interval under a minute", func(a *herokunixv1.HerokuNixApp) { a.Spec.Interval = &metav1.Duration{Duration: 30 * time.Second} }, "spec.interval"},
		{"unknown deletion policy", func(a *herokunixv1.HerokuNixApp) { a.Spec.DeletionPolicy = "Delete" }, "spec.deletionPolicy"},
		{"credentials secret name that is not DNS-1123", func(a *herokunixv1.HerokuNixApp) { a.Spec.CredentialsSecretRef.Name = "Heroku_Key" }, "spec.credentialsSecretRef.name"},
		{"missing credentials secret name", func(a *herokunixv1.HerokuNixApp) { a.Spec.CredentialsSecretRef.Name = "" }, "spec.credentialsSecretRef.name"},
		{"build timeout over six hours", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Build.Timeout = &metav1.Duration{Duration: 12 * time.Hour}
		}, "spec.build.timeout"},
		{"substituter that is not a URL", func(a *herokunixv1.HerokuNixApp) { a.Spec.Build.Substituters = []string{"cache.example.org"} }, "spec.build.substituters[0]"},
		{"layer budget over Heroku's ceiling of 40", func(a *herokunixv1.HerokuNixApp) { a.Spec.Build.MaxLayers = ptr.To[int32](41) }, "spec.build.maxLayers"},
		{"layer budget of zero", func(a *herokunixv1.HerokuNixApp) { a.Spec.Build.MaxLayers = ptr.To[int32](0) }, "spec.build.maxLayers"},
		{"cache volume under 1Gi", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Build.Cache = &herokunixv1.BuildCache{Type: herokunixv1.BuildCacheVolume, Size: ptr.To(resource.MustParse("500Mi"))}
		}, "spec.build.cache.size"},
		{"cache size without a cache volume", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Build.Cache = &herokunixv1.BuildCache{Size: ptr.To(resource.MustParse("10Gi"))}
		}, "spec.build.cache"},
		{"storage class without a cache volume", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Build.Cache = &herokunixv1.BuildCache{Type: herokunixv1.BuildCacheNone, StorageClassName: ptr.To("fast")}
		}, "spec.build.cache"},
		{"unknown cache type", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Build.Cache = &herokunixv1.BuildCache{Type: "Bucket"}
		}, "spec.build.cache.type"},
		{"nix.conf from the Heroku key itself", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Build.NixConfigSecretRef = &herokunixv1.SecretKeyRef{Name: "heroku", Key: "apiKey"}
		}, "spec.build.nixConfigSecretRef.name"},
		{"nix.conf from another key of the credentials Secret", func(a *herokunixv1.HerokuNixApp) {
			a.Spec.Build.NixConfigSecretRef = &herokunixv1.SecretKeyRef{Name: "heroku", Key: "nix.conf"}
		}, "spec.build.nixConfigSecretRef.name"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := validApp(ns)
			app.Name = fmt.Sprintf("invalid-%d", i)
			tc.mutate(app)
			err := k8sClient.Create(context.Background(), app)
			if err == nil {
				t.Fatalf("accepted; want a refusal naming %s", tc.field)
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("error does not name %s:\n%v", tc.field, err)
			}
		})
	}
}

// TestNixConfigFromItsOwnSecretIsAccepted: the refusal of the credentials
// Secret as nix.conf does not refuse nix.conf as such.
func TestNixConfigFromItsOwnSecretIsAccepted(t *testing.T) {
	app := validApp(newNamespace(t))
	app.Spec.Build.NixConfigSecretRef = &herokunixv1.SecretKeyRef{Name: "nix-access", Key: "nix.conf"}
	if err := k8sClient.Create(context.Background(), app); err != nil {
		t.Fatalf("refused: %v", err)
	}
}

// TestFlakeRefsTheBuildRefusesAreRefused: every flake ref the build would
// refuse (nixbuild.ValidateFlakeRef) is refused by the CRD, naming
// spec.flake, and refs the build takes are accepted.
func TestFlakeRefsTheBuildRefusesAreRefused(t *testing.T) {
	ns := newNamespace(t)
	refused := map[string]string{
		"a leading '-'":                  "-github:acme/shop",
		"an option":                      "--impure",
		"a '#' fragment":                 "github:acme/shop#web",
		"a no-break space":               "github:acme/shop\u00a0",
		"a line separator":               "github:acme/shop\u2028x",
		"an ideographic space":           "github:acme/shop\u3000x",
		"a C1 control (NEL)":             "github:acme/shop\u0085",
		"a tab":                          "github:acme/shop\tx",
		"over 1024 bytes in fewer runes": "github:acme/" + strings.Repeat("é", 600),
	}
	i := 0
	for name, ref := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			if nixbuild.ValidateFlakeRef(ref) == nil {
				t.Fatalf("the build takes %q; this row is wrong", ref)
			}
			app := validApp(ns)
			app.Name = fmt.Sprintf("flake-refused-%d", i)
			i++
			app.Spec.Flake = ref
			err := k8sClient.Create(context.Background(), app)
			if err == nil {
				t.Fatalf("accepted %q, which the build refuses", ref)
			}
			if !strings.Contains(err.Error(), "spec.flake") {
				t.Errorf("error does not name spec.flake:\n%v", err)
			}
		})
	}
	for i, ref := range []string{
		"github:acme/shop?ref=main",
		"github:acme/shop/9f2c1e0aa1b2c3d4e5f60718293a4b5c6d7e8f90",
		"git+https://git.example.org/acme/shop?ref=release-1&rev=9f2c1e0aa1b2c3d4e5f60718293a4b5c6d7e8f90",
		"path:/srv/flakes/shop",
		"https://example.org/shop/archive/main.tar.gz",
		"github:acme/" + strings.Repeat("a", 1012),
	} {
		t.Run("accepts "+ref[:min(len(ref), 40)], func(t *testing.T) {
			if err := nixbuild.ValidateFlakeRef(ref); err != nil {
				t.Fatalf("the build refuses %q: %v; this row is wrong", ref, err)
			}
			app := validApp(ns)
			app.Name = fmt.Sprintf("flake-accepted-%d", i)
			app.Spec.Flake = ref
			if err := k8sClient.Create(context.Background(), app); err != nil {
				t.Errorf("refused %q, which the build takes: %v", ref, err)
			}
		})
	}
}

// TestHerokuAppNamesAtTheLimitsAreAccepted: Heroku's schema pattern
// (^[a-z][a-z0-9-]{1,28}[a-z0-9]$) allows 3 to 30 characters with inner
// dashes and digits; the CRD must not refuse what Heroku accepts.
func TestHerokuAppNamesAtTheLimitsAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	for i, name := range []string{"abc", "a-1", "a" + strings.Repeat("-", 28) + "z", "a" + strings.Repeat("b", 28) + "9"} {
		app := validApp(ns)
		app.Name = fmt.Sprintf("valid-%d", i)
		app.Spec.AppName = name
		if err := k8sClient.Create(context.Background(), app); err != nil {
			t.Errorf("app name %q (%d characters) refused: %v", name, len(name), err)
		}
	}
}

func TestNamesThatCannotLabelABuildJobAreRefused(t *testing.T) {
	app := validApp(newNamespace(t))
	app.Name = strings.Repeat("a", 64)
	err := k8sClient.Create(context.Background(), app)
	if err == nil || !strings.Contains(err.Error(), "metadata.name must be at most 63 characters") {
		t.Fatalf("a 64-character name: got %v, want a refusal", err)
	}
}

func TestAppNameIsImmutable(t *testing.T) {
	ns := newNamespace(t)
	app := validApp(ns)
	ctx := context.Background()
	if err := k8sClient.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	app.Spec.AppName = "other-app"
	err := k8sClient.Update(ctx, app)
	if err == nil || !strings.Contains(err.Error(), "spec.appName") {
		t.Fatalf("changing appName: got %v, want a refusal naming spec.appName", err)
	}
}

func TestPrinterColumnsInServerSideTable(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	app := validApp(ns)
	if err := k8sClient.Create(ctx, app); err != nil {
		t.Fatal(err)
	}
	app.Status = herokunixv1.HerokuNixAppStatus{
		ShortRevision: "9f2c1e0aa1b2",
		Release:       &herokunixv1.ReleaseStatus{ID: "r1", Version: 42, Name: "v42", Status: "succeeded"},
		Promotion:     &herokunixv1.PromotionStatus{Source: "staging", SourceApp: "acme-shop-staging", Revision: "9f2c1e0aa1b2"},
		Conditions: []metav1.Condition{{
			Type: herokunixv1.ConditionReady, Status: metav1.ConditionTrue, Reason: herokunixv1.ReasonReleased,
			Message: "v42 runs 9f2c1e0aa1b2", LastTransitionTime: metav1.Now(),
		}},
	}
	if err := k8sClient.Status().Update(ctx, app); err != nil {
		t.Fatal(err)
	}
	table, err := kubetable.Get(ctx, cfg, herokunixv1.GroupVersion.WithResource("herokunixapps"), ns)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"Name": "shop", "App": "acme-shop", "Revision": "9f2c1e0aa1b2", "From": "staging", "Release": "v42", "Ready": "True", "Reason": "Released"}
	if len(table.Rows) != 1 {
		t.Fatalf("got %d rows, want 1", len(table.Rows))
	}
	seen := map[string]bool{}
	for i, col := range table.ColumnDefinitions {
		seen[col.Name] = true
		if w, ok := want[col.Name]; ok && table.Rows[0].Cells[i] != w {
			t.Errorf("column %s = %v, want %v", col.Name, table.Rows[0].Cells[i], w)
		}
	}
	for _, name := range []string{"Name", "App", "Revision", "From", "Release", "Ready", "Reason", "Age", "URL", "Flake", "Message"} {
		if !seen[name] {
			t.Errorf("column %s missing from the table", name)
		}
	}
}

func TestLayerBudgetDefaultsTo32AndAcceptsTheCeiling(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	for name, budget := range map[string]*int32{"layers-default": nil, "layers-ceiling": ptr.To[int32](40)} {
		app := validApp(ns)
		app.Name = name
		app.Spec.Build.MaxLayers = budget
		// The build object must be present for the API server to default
		// its fields.
		app.Spec.Build.Substituters = []string{"https://cache.example.org"}
		if err := k8sClient.Create(ctx, app); err != nil {
			t.Fatalf("%s refused: %v", name, err)
		}
		want := int32(32)
		if budget != nil {
			want = *budget
		}
		if got := ptr.Deref(app.Spec.Build.MaxLayers, 0); got != want {
			t.Errorf("%s: maxLayers %d, want %d", name, got, want)
		}
	}
}

// TestBuildCacheDefaultsToNoneAndAcceptsAVolume: a cache stanza without a
// type keeps nothing; a volume with a size and class is accepted as given.
func TestBuildCacheDefaultsToNoneAndAcceptsAVolume(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	off := validApp(ns)
	off.Name = "cache-default"
	off.Spec.Build.Cache = &herokunixv1.BuildCache{}
	if err := k8sClient.Create(ctx, off); err != nil {
		t.Fatalf("an empty cache stanza refused: %v", err)
	}
	if off.Spec.Build.Cache.Type != herokunixv1.BuildCacheNone || off.Spec.Build.Cache.Enabled() {
		t.Errorf("cache type defaulted to %q, want None", off.Spec.Build.Cache.Type)
	}
	on := validApp(ns)
	on.Name = "cache-volume"
	on.Spec.Build.Cache = &herokunixv1.BuildCache{Type: herokunixv1.BuildCacheVolume, Size: ptr.To(resource.MustParse("1Gi")), StorageClassName: ptr.To("standard")}
	if err := k8sClient.Create(ctx, on); err != nil {
		t.Fatalf("a 1Gi cache volume refused: %v", err)
	}
	if got := on.Spec.Build.Cache.SizeOrDefault(); got.Cmp(resource.MustParse("1Gi")) != 0 || !on.Spec.Build.Cache.Enabled() {
		t.Errorf("cache %+v after create", on.Spec.Build.Cache)
	}
}
