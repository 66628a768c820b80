<?php
// Test scaffolding: one webmail IMAP login through Roundcube's own library (rcube_imap), with its plugin
// API loading the plugins the given configuration directory enables, as a request from REMOTE_ADDR with
// an optional X-Forwarded-For. Prints {"connected": bool, "error": string} as JSON.
// Usage: php roundcube_login.php ROUNDCUBE_DIR PLUGINS_DIR CONFIG_DIR HOST PORT USER PASSWORD REMOTE_ADDR [XFF]
[$self, $roundcube, $plugins, $config, $host, $port, $user, $password, $remote] = $argv;
$xff = $argv[9] ?? '';
define('RCUBE_INSTALL_PATH', rtrim($roundcube, '/') . '/');
define('RCUBE_CONFIG_DIR', rtrim($config, '/') . '/');
define('RCUBE_PLUGINS_DIR', rtrim($plugins, '/') . '/');
require_once RCUBE_INSTALL_PATH . 'program/lib/Roundcube/bootstrap.php';

$_SERVER['REMOTE_ADDR'] = $remote;
if ($xff !== '') {
    $_SERVER['HTTP_X_FORWARDED_FOR'] = $xff;
}
$rcube = rcube::get_instance(rcube::INIT_WITH_PLUGINS);
$rcube->plugins->init($rcube, 'login');
$rcube->plugins->load_plugins((array) $rcube->config->get('plugins', []));

$imap = new rcube_imap();
$connected = $imap->connect($host, $user, $password, (int) $port, null);
echo json_encode(['connected' => (bool) $connected, 'error' => (string) $imap->get_error_str()]), "\n";
