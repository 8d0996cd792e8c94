// Package inprocess holds tests only; see inprocess_test.go.
package inprocess
