package argocd_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// health runs health.lua the way Argo CD's Lua VM does (util/lua in
// argo-cd): only the package, base and table libraries are open, the
// resource is the global obj (maps as tables, lists as 1-based tables,
// integers as numbers), the script's return value is the health, and a run
// is cut off after a second.
func health(t *testing.T, script string, obj *unstructured.Unstructured) (status, message string) {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase,
		lua.TabLibName:  lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), NRet: 0, Protect: true}, lua.LString(name)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		t.Fatalf("health.lua: %v", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned a %s, not a table", l.Get(-1).Type())
	}
	st, ok := ret.RawGetString("status").(lua.LString)
	if !ok {
		t.Fatalf("health.lua returned no status string")
	}
	msg, ok := ret.RawGetString("message").(lua.LString)
	if !ok {
		t.Fatalf("health.lua returned no message string")
	}
	return string(st), string(msg)
}

// toLua converts as Argo CD's decodeValue does.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for k, item := range v {
			tbl.RawSetH(lua.LString(k), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func readScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("health.lua")
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
