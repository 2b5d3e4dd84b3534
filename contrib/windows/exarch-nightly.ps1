<#
.SYNOPSIS
  Runs one exarch job for Windows Task Scheduler and keeps a log of it.

.DESCRIPTION
  Runs `exarch -P <profile> <job>` with the configuration file (default
  C:\ProgramData\exarch\config.toml, from contrib/windows/config.toml.example; readable only by
  Administrators and SYSTEM), appends what exarch prints to
  C:\ProgramData\exarch\logs\<job>-<date>.log (the profile's log-file keeps the detailed log) and
  exits with exarch's exit code (0 ok, 4 damage, 5 partial, others errors), so the task's history
  shows it.

.EXAMPLE
  powershell.exe -NoProfile -ExecutionPolicy Bypass -File exarch-nightly.ps1 -Job pack
#>
param(
  [ValidateSet('pack', 'verify', 'prune')]
  [string]$Job = 'pack',
  [string]$UseProfile = 'nightly',
  [string]$Config = 'C:\ProgramData\exarch\config.toml',
  [string]$Exarch = 'C:\Program Files\exarch\exarch.exe'
)
$ErrorActionPreference = 'Stop'

$jobArgs = @('--config', $Config, '-P', $UseProfile, $Job)
if ($Job -eq 'pack') { $jobArgs += '--quiet' }

$logDir = 'C:\ProgramData\exarch\logs'
New-Item -ItemType Directory -Force -Path $logDir | Out-Null
$log = Join-Path $logDir ("{0}-{1:yyyy-MM-dd}.log" -f $Job, (Get-Date))
"=== $(Get-Date -Format o) exarch $($jobArgs -join ' ')" | Out-File -Append -Encoding utf8 $log
& $Exarch @jobArgs *>> $log
$code = $LASTEXITCODE
"=== $(Get-Date -Format o) exit $code" | Out-File -Append -Encoding utf8 $log
exit $code
