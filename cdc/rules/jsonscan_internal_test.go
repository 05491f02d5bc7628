package rules

import "testing"

func TestField(t *testing.T) {
	obj := []byte(` { "a" : {"x":[1,{"}":"]"}]}, "b\"c":"q\"}", "na\u006de":"Ada", "n": -1.5e3 ,"z":null}`)
	for _, tc := range []struct {
		key, want string
		found     bool
	}{
		{"a", `{"x":[1,{"}":"]"}]}`, true},
		{`b"c`, `"q\"}"`, true},
		{"name", `"Ada"`, true},
		{"n", `-1.5e3`, true},
		{"z", `null`, true},
		{"x", "", false},
	} {
		got, found := field(obj, tc.key)
		if found != tc.found || string(got) != tc.want {
			t.Errorf("field %q = %q, %v; want %q, %v", tc.key, got, found, tc.want, tc.found)
		}
	}
	for _, bad := range []string{``, `[]`, `{"a"}`, `{"a":}`, `{"a":"x`, `{"a":1 "b":2}`} {
		if fields([]byte(bad), func(k, v []byte) bool { return true }) {
			t.Errorf("fields(%q) accepted", bad)
		}
	}
	if s, ok := unquote([]byte(`"a\u00e9\n"`)); !ok || s != "aé\n" {
		t.Errorf("unquote: %q %v", s, ok)
	}
}
