-- Argo CD health of a fedcare Participant (fedcare.io/v1alpha1): one site of a job.
--   Healthy      phase Succeeded; or Connected/Training with condition Ready=True
--   Progressing  no status yet; the operator has not seen the latest spec; phase Pending (the
--                certificate, enrollment or trainer is on its way: the Ready condition says
--                which); Connected/Training while Ready is not True; Disconnected (the trainer
--                retries until its connect timeout)
--   Degraded     phase Failed (invalid spec, refused enrollment token, spent privacy budget,
--                or the job failed)
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

local function with_detail(text, detail)
  if detail ~= nil and detail ~= "" then
    return text .. ": " .. detail
  end
  return text
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
local ready = condition(status, "Ready")
local rounds = tostring(status.roundsCompleted or 0) .. " rounds contributed"

if phase == "Failed" then
  local failed = condition(status, "Failed")
  local detail = status.message
  if (detail == nil or detail == "") and failed ~= nil then
    detail = failed.reason .. ": " .. (failed.message or "")
  end
  hs.status = "Degraded"
  hs.message = with_detail("Failed", detail)
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded, " .. rounds
  return hs
end

if phase == "Connected" or phase == "Training" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
  else
    hs.status = "Progressing"
  end
  hs.message = phase .. ", " .. rounds
  return hs
end

if phase == "Pending" or phase == "Disconnected" then
  hs.status = "Progressing"
  local detail = status.message
  if (detail == nil or detail == "") and ready ~= nil then
    detail = ready.message
  end
  hs.message = with_detail(phase, detail)
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
