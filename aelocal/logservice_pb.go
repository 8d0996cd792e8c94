package aelocal

import "strings"

// The log service's messages. appengine/v2 dropped the log service, so no
// client package that aelocal links registers them; the v1 client
// (google.golang.org/appengine/log) still calls it. aelocal describes them
// (pb_described.go) with the field numbers and types of v1's
// internal/log/log_service.proto.

// logPkg is the package of the messages, as their full names start.
const logPkg = "aelocal.logservice."

func init() {
	const (
		i32 = pbInt32
		i64 = pbInt64
		str = pbString
		byt = pbBytes
		bln = pbBool
		dbl = pbDouble
		msg = pbMsg
	)
	registerDescribed(strings.TrimSuffix(logPkg, "."), []describedMessage{
		{"UserAppLogLine", []describedField{{"timestamp_usec", 1, i64, false, ""}, {"level", 2, i64, false, ""}, {"message", 3, str, false, ""}}},
		{"UserAppLogGroup", []describedField{{"log_line", 2, msg, true, "UserAppLogLine"}}},
		{"FlushRequest", []describedField{{"logs", 1, byt, false, ""}}},
		{"LogOffset", []describedField{{"request_id", 1, byt, false, ""}}},
		{"LogLine", []describedField{{"time", 1, i64, false, ""}, {"level", 2, i32, false, ""}, {"log_message", 3, str, false, ""}}},
		{"RequestLog", []describedField{
			{"app_id", 1, str, false, ""}, {"module_id", 37, str, false, ""}, {"version_id", 2, str, false, ""},
			{"request_id", 3, byt, false, ""}, {"offset", 35, msg, false, "LogOffset"}, {"ip", 4, str, false, ""},
			{"nickname", 5, str, false, ""}, {"start_time", 6, i64, false, ""}, {"end_time", 7, i64, false, ""},
			{"latency", 8, i64, false, ""}, {"mcycles", 9, i64, false, ""}, {"method", 10, str, false, ""},
			{"resource", 11, str, false, ""}, {"http_version", 12, str, false, ""}, {"status", 13, i32, false, ""},
			{"response_size", 14, i64, false, ""}, {"referrer", 15, str, false, ""}, {"user_agent", 16, str, false, ""},
			{"url_map_entry", 17, str, false, ""}, {"combined", 18, str, false, ""}, {"host", 20, str, false, ""},
			{"cost", 21, dbl, false, ""}, {"task_queue_name", 22, str, false, ""}, {"task_name", 23, str, false, ""},
			{"finished", 27, bln, false, ""}, {"clone_key", 28, byt, false, ""}, {"line", 29, msg, true, "LogLine"},
			{"lines_incomplete", 36, bln, false, ""}, {"app_engine_release", 38, byt, false, ""},
		}},
		{"LogModuleVersion", []describedField{{"module_id", 1, str, false, ""}, {"version_id", 2, str, false, ""}}},
		{"LogReadRequest", []describedField{
			{"app_id", 1, str, false, ""}, {"version_id", 2, str, true, ""}, {"module_version", 19, msg, true, "LogModuleVersion"},
			{"start_time", 3, i64, false, ""}, {"end_time", 4, i64, false, ""}, {"offset", 5, msg, false, "LogOffset"},
			{"request_id", 6, byt, true, ""}, {"minimum_log_level", 7, i32, false, ""}, {"include_incomplete", 8, bln, false, ""},
			{"count", 9, i64, false, ""}, {"include_app_logs", 10, bln, false, ""}, {"include_host", 11, bln, false, ""},
			{"include_all", 12, bln, false, ""}, {"cache_iterator", 13, bln, false, ""}, {"combined_log_regex", 14, str, false, ""},
			{"host_regex", 15, str, false, ""}, {"replica_index", 16, i32, false, ""}, {"app_logs_per_request", 17, i32, false, ""},
			{"num_shards", 18, i32, false, ""},
		}},
		{"LogReadResponse", []describedField{{"log", 1, msg, true, "RequestLog"}, {"offset", 2, msg, false, "LogOffset"}, {"last_end_time", 3, i64, false, ""}}},
	})
}
