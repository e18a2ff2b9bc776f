-- Sets the reconcile-now annotation to the current time; a new value is
-- what the controller acts on (it records the last one in
-- status.lastHandledReconcileAt).
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["herokunix.dev/reconcile-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
