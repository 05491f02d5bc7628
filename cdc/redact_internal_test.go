package cdc

import (
	"strings"
	"testing"
)

func TestRedactConnString(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://walhook:s3cretpw@127.0.0.1:5432/app", "postgres://walhook:xxxxx@127.0.0.1:5432/app"},
		{"postgresql://walhook:s3cretpw@127.0.0.1/app?sslmode=disable", "postgresql://walhook:xxxxx@127.0.0.1/app?sslmode=disable"},
		{"postgres://walhook@127.0.0.1/app", "postgres://walhook@127.0.0.1/app"},
		{"postgres://127.0.0.1/app", "postgres://127.0.0.1/app"},
		{"postgres://walhook:@127.0.0.1/app", "postgres://walhook:xxxxx@127.0.0.1/app"},
		{"postgres://u@h/app?password=s3cretpw&sslmode=require", "postgres://u@h/app?password=xxxxx&sslmode=require"},
		{"postgres://u@h/app?sslpassword=s3cretpw", "postgres://u@h/app?sslpassword=xxxxx"},
		{"postgres://u@h/app?pass%77ord=s3cretpw", "postgres://u@h/app?pass%77ord=xxxxx"},
		{"postgres://u:s3c@retpw@h1:5432,h2:5433/app", "postgres://u:xxxxx@h1:5432,h2:5433/app"},
		{"postgres://u:s3c/retpw@h/app", "postgres://u:xxxxx@h/app"},
		{"postgres://u:s3c?retpw@h/app", "postgres://u:xxxxx@h/app"},
		{"host=127.0.0.1 user=walhook password=s3cretpw dbname=app", "host=127.0.0.1 user=walhook password=xxxxx dbname=app"},
		{"host=h password = 's3c ret\\'pw' dbname=app", "host=h password=xxxxx dbname=app"},
		{"host=h password='s3c retpw", "host=h password=xxxxx"},
		{"host=h sslpassword=s3cretpw", "host=h sslpassword=xxxxx"},
		{"", ""},
	}
	for _, tc := range cases {
		got := RedactConnString(tc.in)
		if got != tc.want {
			t.Errorf("RedactConnString(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, piece := range []string{"s3c", "retpw"} {
			if strings.Contains(got, piece) {
				t.Errorf("RedactConnString(%q) = %q shows %q", tc.in, got, piece)
			}
		}
	}
}
