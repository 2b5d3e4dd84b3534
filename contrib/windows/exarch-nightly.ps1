<#
.SYNOPSIS
  Runs one exarch job for Windows Task Scheduler and keeps a log of it.

.DESCRIPTION
  Reads settings from a file only Administrators and SYSTEM can read (default
  C:\ProgramData\exarch\exarch.env: NAME=VALUE lines, as in contrib/systemd/exarch.env.example),
  sets them as environment variables for this process only, runs exarch with the job's
  arguments, appends its output to C:\ProgramData\exarch\logs\<job>-<date>.log and exits with
  exarch's exit code (0 ok, 4 damage, 5 partial, others errors), so the task's history shows it.

.EXAMPLE
  powershell.exe -NoProfile -ExecutionPolicy Bypass -File exarch-nightly.ps1 -Job pack
#>
param(
  [ValidateSet('pack', 'verify', 'prune')]
  [string]$Job = 'pack',
  [string]$EnvFile = 'C:\ProgramData\exarch\exarch.env',
  [string]$Exarch = 'C:\Program Files\exarch\exarch.exe'
)
$ErrorActionPreference = 'Stop'

foreach ($line in Get-Content -LiteralPath $EnvFile) {
  $line = $line.Trim()
  if ($line -eq '' -or $line.StartsWith('#')) { continue }
  $name, $value = $line -split '=', 2
  [Environment]::SetEnvironmentVariable($name.Trim(), $value.Trim(), 'Process')
}

switch ($Job) {
  'pack'   { $jobArgs = @('pack', '--ews', $env:EXARCH_EWS_URL, '--user', $env:EXARCH_EWS_USER,
                          '--all-mailboxes', '--max-duration', '6h', '--quiet') }
  'verify' { $week = (Get-Culture).Calendar.GetWeekOfYear((Get-Date), 'FirstFourDayWeek', 'Monday')
             $jobArgs = @('verify', '--read-data-subset', "$(($week % 7) + 1)/7") }
  'prune'  { $jobArgs = @('prune', '--keep-daily', '14', '--keep-weekly', '8', '--keep-monthly', '24',
                          '--keep-yearly', '7') }
}

$logDir = 'C:\ProgramData\exarch\logs'
New-Item -ItemType Directory -Force -Path $logDir | Out-Null
$log = Join-Path $logDir ("{0}-{1:yyyy-MM-dd}.log" -f $Job, (Get-Date))
"=== $(Get-Date -Format o) exarch $($jobArgs -join ' ')" | Out-File -Append -Encoding utf8 $log
& $Exarch @jobArgs *>> $log
$code = $LASTEXITCODE
"=== $(Get-Date -Format o) exit $code" | Out-File -Append -Encoding utf8 $log
exit $code
