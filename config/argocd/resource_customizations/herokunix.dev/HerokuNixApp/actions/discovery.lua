-- Argo CD resource actions for herokunix.dev/HerokuNixApp.
-- reconcile asks the controller to look again now (re-resolve a moving
-- flake ref, retry a failed build); suspend and resume flip spec.suspend.
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["reconcile"] = { ["disabled"] = suspended }
actions["suspend"] = { ["disabled"] = suspended }
actions["resume"] = { ["disabled"] = not suspended }
return actions
