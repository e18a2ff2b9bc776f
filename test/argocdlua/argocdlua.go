// Package argocdlua runs Argo CD resource customizations (health checks
// and resource actions) the way Argo CD's Lua VM does (util/lua in
// argoproj/argo-cd), so tests can check our scripts without Argo CD:
//
//   - only the package, base and table libraries are open, plus a safe os
//     library (time, date, clock, difftime) that require("os") also finds;
//   - the resource is the global obj: maps as tables, lists as 1-based
//     tables, numbers as Lua numbers;
//   - a health script returns {status, message}; a discovery script a table
//     of action name to {disabled}; an action script the changed obj;
//   - a run is cut off after a second.
package argocdlua

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Action is one discovered resource action.
type Action struct {
	Name     string `json:"name"`
	Disabled bool   `json:"disabled"`
}

// Health runs a health script on obj.
func Health(script string, obj map[string]any) (status, message string, err error) {
	ret, err := run(script, obj)
	if err != nil {
		return "", "", err
	}
	t, ok := ret.(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("health script returned a %s, not a table", ret.Type())
	}
	st, ok := t.RawGetString("status").(lua.LString)
	if !ok {
		return "", "", fmt.Errorf("health script returned no status string")
	}
	msg, ok := t.RawGetString("message").(lua.LString)
	if !ok {
		return "", "", fmt.Errorf("health script returned no message string")
	}
	return string(st), string(msg), nil
}

// Discover runs an actions/discovery.lua script on obj; the actions come
// sorted by name.
func Discover(script string, obj map[string]any) ([]Action, error) {
	ret, err := run(script, obj)
	if err != nil {
		return nil, err
	}
	t, ok := ret.(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("discovery script returned a %s, not a table", ret.Type())
	}
	var out []Action
	var ferr error
	t.ForEach(func(k, v lua.LValue) {
		name, ok := k.(lua.LString)
		if !ok {
			ferr = fmt.Errorf("discovery script returned a %s key", k.Type())
			return
		}
		a := Action{Name: string(name)}
		if vt, ok := v.(*lua.LTable); ok {
			a.Disabled = lua.LVAsBool(vt.RawGetString("disabled"))
		}
		out = append(out, a)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, ferr
}

// Act runs an action.lua script on obj and returns the object it returns.
func Act(script string, obj map[string]any) (map[string]any, error) {
	ret, err := run(script, obj)
	if err != nil {
		return nil, err
	}
	t, ok := ret.(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("action script returned a %s, not a table", ret.Type())
	}
	m, ok := fromLua(t).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("action script returned a list, not an object")
	}
	return m, nil
}

func run(script string, obj map[string]any) (lua.LValue, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase,
		lua.TabLibName:  lua.OpenTable,
		lua.OsLibName:   openSafeOs,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), NRet: 0, Protect: true}, lua.LString(name)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	return l.Get(-1), nil
}

// safeOs are the os functions Argo CD's safe os library keeps: none that
// touch files, processes or the environment.
var safeOs = []string{"clock", "date", "difftime", "time"}

func safeOsTable(l *lua.LState) *lua.LTable {
	// gopher-lua's os library, opened in a throwaway state, supplies the
	// implementations.
	full := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer full.Close()
	full.Push(full.NewFunction(lua.OpenOs))
	full.Call(0, 1)
	src := full.Get(-1).(*lua.LTable)
	t := l.NewTable()
	for _, name := range safeOs {
		if fn, ok := src.RawGetString(name).(*lua.LFunction); ok {
			t.RawSetString(name, l.NewFunction(fn.GFunction))
		}
	}
	return t
}

func openSafeOs(l *lua.LState) int {
	t := safeOsTable(l)
	l.SetGlobal(lua.OsLibName, t)
	l.Push(t)
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(safeOsTable(l))
	return 1
}

// toLua converts as Argo CD's decodeValue does.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
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

// fromLua converts a Lua value back: a table with keys 1..n is a list,
// another table an object; integral numbers are int64, as JSON decoding
// into unstructured gives them.
func fromLua(v lua.LValue) any {
	switch v := v.(type) {
	case lua.LString:
		return string(v)
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		f := float64(v)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f)
		}
		return f
	case *lua.LTable:
		if n := v.MaxN(); n > 0 && n == countKeys(v) {
			out := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				out = append(out, fromLua(v.RawGetInt(i)))
			}
			return out
		}
		out := map[string]any{}
		v.ForEach(func(k, val lua.LValue) {
			out[k.String()] = fromLua(val)
		})
		return out
	}
	return nil
}

func countKeys(t *lua.LTable) int {
	n := 0
	t.ForEach(func(lua.LValue, lua.LValue) { n++ })
	return n
}
