-- Argo CD health of a fedcare FederatedJob (fedcare.io/v1alpha1).
--   Healthy      phase Succeeded; or Training with condition Ready=True
--   Progressing  no status yet; the operator has not seen the latest spec; phase Pending or
--                WaitingForParticipants; Training while Ready is not True, or while the
--                operator reconnects to the coordinator (Degraded=True, CoordinatorUnreachable).
--                A site that left (Degraded=True for another reason) is named in the message.
--   Degraded     phase Failed (the message says why, e.g. InvalidSpec or a missed quorum)
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function participants(status)
  return tostring(status.readyParticipants or 0) .. "/" .. tostring(status.minParticipants or 0)
    .. " participants ready"
end

local function rounds(status)
  return "round " .. tostring(status.currentRound or 0) .. "/" .. tostring(status.totalRounds or 0)
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the fedcare operator"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
if phase == "Failed" then
  local failed = condition(status, "Failed")
  hs.status = "Degraded"
  if status.message ~= nil and status.message ~= "" then
    hs.message = status.message
  elseif failed ~= nil and failed.message ~= nil and failed.message ~= "" then
    hs.message = failed.reason .. ": " .. failed.message
  else
    hs.message = "Failed"
  end
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded after " .. tostring(status.totalRounds or 0) .. " rounds"
  if status.latestModel ~= nil and status.latestModel.version ~= nil then
    hs.message = hs.message .. "; model " .. status.latestModel.version
  end
  return hs
end

if phase == "Training" then
  local ready = condition(status, "Ready")
  local degraded = condition(status, "Degraded")
  hs.message = "Training, " .. rounds(status) .. ", " .. participants(status)
  if degraded ~= nil and degraded.status == "True" and degraded.reason == "CoordinatorUnreachable" then
    -- The operator lost the coordinator's status stream (a restart); it reconnects.
    hs.status = "Progressing"
    hs.message = "Training, " .. rounds(status) .. "; the operator is reconnecting to the coordinator"
  elseif ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
  else
    hs.status = "Progressing"
  end
  if degraded ~= nil and degraded.status == "True" and degraded.reason ~= "CoordinatorUnreachable" then
    -- A site left (e.g. its privacy budget is spent); the job goes on while the quorum holds.
    hs.message = hs.message .. "; " .. degraded.reason .. ": " .. (degraded.message or "")
  end
  return hs
end

if phase == "Pending" or phase == "WaitingForParticipants" then
  hs.status = "Progressing"
  hs.message = phase .. ", " .. participants(status)
  if status.message ~= nil and status.message ~= "" then
    hs.message = hs.message .. ": " .. status.message
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
