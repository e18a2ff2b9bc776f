package argocd_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// fluxHealthExprs are the healthCheckExprs for HerokuNixApp, read from the
// Kustomization example in docs/flux.md, so the page shows what is tested.
func fluxHealthExprs(t *testing.T) (inProgress, failed, current string) {
	t.Helper()
	data, err := os.ReadFile("../../docs/flux.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(data)
	if block == nil {
		t.Fatal("docs/flux.md has no YAML example")
	}
	var k struct {
		Spec struct {
			HealthCheckExprs []struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				InProgress string `json:"inProgress"`
				Failed     string `json:"failed"`
				Current    string `json:"current"`
			} `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(block[1], &k); err != nil {
		t.Fatal(err)
	}
	for _, e := range k.Spec.HealthCheckExprs {
		if e.APIVersion == "herokunix.dev/v1alpha1" && e.Kind == "HerokuNixApp" {
			return e.InProgress, e.Failed, e.Current
		}
	}
	t.Fatal("docs/flux.md has no healthCheckExprs for herokunix.dev/v1alpha1 HerokuNixApp")
	return
}

// celExpr parses an expression in the environment Flux uses
// (fluxcd/pkg runtime/cel): parsed, not compiled, so the object's
// top-level fields are its variables.
func celExpr(t *testing.T, expr string) cel.Program {
	t.Helper()
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(), ext.Sets(), ext.Encoders(),
	)
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Parse(expr)
	if iss.Err() != nil {
		t.Fatalf("%s: %v", expr, iss.Err())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
	if err != nil {
		t.Fatal(err)
	}
	return prg
}

// fluxStatus evaluates the expressions as Flux's StatusEvaluator does: a
// generation not yet observed is InProgress; then inProgress, failed,
// current, the first true deciding; none true is InProgress.
func fluxStatus(t *testing.T, progs [3]cel.Program, u *unstructured.Unstructured) (status.Status, error) {
	t.Helper()
	obj := u.UnstructuredContent()
	if og, ok, _ := unstructured.NestedInt64(obj, "status", "observedGeneration"); ok {
		if g, ok, _ := unstructured.NestedInt64(obj, "metadata", "generation"); ok && g != og {
			return status.InProgressStatus, nil
		}
	}
	for i, st := range []status.Status{status.InProgressStatus, status.FailedStatus, status.CurrentStatus} {
		v, _, err := progs[i].ContextEval(context.Background(), obj)
		if err != nil {
			return "", err
		}
		b, ok := v.(types.Bool)
		if !ok {
			t.Fatalf("expression %d is not boolean: %v", i, v)
		}
		if b {
			return st, nil
		}
	}
	return status.InProgressStatus, nil
}

// TestFluxHealthCheckExprs runs the documented expressions over the status
// table. Flux agrees with kstatus except where the expressions are the
// point: they never call an unobserved or Ready-less resource Current.
func TestFluxHealthCheckExprs(t *testing.T) {
	inProgress, failed, current := fluxHealthExprs(t)
	progs := [3]cel.Program{celExpr(t, inProgress), celExpr(t, failed), celExpr(t, current)}
	for _, c := range statusCases(t) {
		t.Run(c.name, func(t *testing.T) {
			u := c.unstructured(t)
			got, err := fluxStatus(t, progs, u)
			_, hasStatus := u.Object["status"]
			switch {
			case !hasStatus:
				// A missing status cannot be read; Flux retries.
				if err == nil || !strings.Contains(err.Error(), "status") {
					t.Errorf("a status-less resource read as %s (%v), want an evaluation error", got, err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			want := c.kstatus
			switch {
			case want == status.TerminatingStatus:
				// kstatus looks at deletionTimestamp; the expressions read
				// the conditions, which say the deletion is in progress.
				want = status.InProgressStatus
			case !c.produced && want == status.CurrentStatus:
				want = status.InProgressStatus
			}
			if got != want {
				t.Errorf("Flux reads %s, want %s", got, want)
			}
		})
	}
}
