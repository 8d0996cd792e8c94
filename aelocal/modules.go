package aelocal

// Application error codes of modules (ModulesServiceError.ErrorCode).
const (
	modInvalidModule  = 1
	modInvalidVersion = 2
)

// The one module and version a local app has, as in the SDK stub's local
// dispatcher.
const (
	localModule  = "default"
	localVersion = "1"
)

func init() {
	const p = "appengine.v2."
	register("modules", "GetModules", p+"GetModulesRequest", p+"GetModulesResponse", modGetModules)
	register("modules", "GetVersions", p+"GetVersionsRequest", p+"GetVersionsResponse", modGetVersions)
	register("modules", "GetDefaultVersion", p+"GetDefaultVersionRequest", p+"GetDefaultVersionResponse", modGetDefaultVersion)
	register("modules", "GetNumInstances", p+"GetNumInstancesRequest", p+"GetNumInstancesResponse", modAutoScaled("it has no instance count"))
	register("modules", "SetNumInstances", p+"SetNumInstancesRequest", p+"SetNumInstancesResponse", modAutoScaled("its instance count cannot be set"))
	register("modules", "StartModule", p+"StartModuleRequest", p+"StartModuleResponse", modAutoScaled("it cannot be started"))
	register("modules", "StopModule", p+"StopModuleRequest", p+"StopModuleResponse", modAutoScaled("it cannot be stopped"))
	register("modules", "GetHostname", p+"GetHostnameRequest", p+"GetHostnameResponse", modGetHostname)
}

// moduleOf checks the module a request names; none means the caller's,
// which locally is the one module.
func moduleOf(in pmsg) error {
	if in.Has("module") && in.Str("module") != localModule {
		return errorf(modInvalidModule, "module %q does not exist: the local app has only %q", in.Str("module"), localModule)
	}
	return nil
}

// versionOf checks the module and version a request names.
func versionOf(in pmsg) error {
	if err := moduleOf(in); err != nil {
		return errorf(modInvalidVersion, "%s", err.(*serviceError).detail)
	}
	if in.Has("version") && in.Str("version") != localVersion {
		return errorf(modInvalidVersion, "version %q does not exist: the local app has only version %q", in.Str("version"), localVersion)
	}
	return nil
}

func modGetModules(s *Server, in, out pmsg) error {
	out.Append("module", localModule)
	return nil
}

func modGetVersions(s *Server, in, out pmsg) error {
	if err := moduleOf(in); err != nil {
		return err
	}
	out.Append("version", localVersion)
	return nil
}

func modGetDefaultVersion(s *Server, in, out pmsg) error {
	if err := moduleOf(in); err != nil {
		return err
	}
	out.Set("version", localVersion)
	return nil
}

// modAutoScaled answers the calls the local version cannot serve: it
// scales automatically, so its instance count cannot be read or set and it
// cannot be started or stopped. The stub answers INVALID_VERSION to all
// four, as production does for such a version.
func modAutoScaled(what string) methodFunc {
	return func(s *Server, in, out pmsg) error {
		if err := versionOf(in); err != nil {
			return err
		}
		return errorf(modInvalidVersion, "the local version scales automatically: %s", what)
	}
}

// modGetHostname answers the app's host: AppURL's, or dev_appserver's
// localhost:8080. Instances cannot be addressed locally.
func modGetHostname(s *Server, in, out pmsg) error {
	if err := versionOf(in); err != nil {
		return errorf(modInvalidModule, "%s", err.(*serviceError).detail)
	}
	if in.Has("instance") {
		return errorf(3, "instance %q cannot be addressed: the local version scales automatically", in.Str("instance")) // INVALID_INSTANCES
	}
	out.Set("hostname", s.appHost())
	return nil
}
