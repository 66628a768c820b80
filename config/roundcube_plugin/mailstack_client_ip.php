<?php

/**
 * mailstack_client_ip: every webmail user is their own client to Dovecot.
 *
 * Without this plugin every webmail login reaches Dovecot from the webmail container's address, so
 * Dovecot's delay after a failed login (and its logs) lump all users of a webmail together. On the
 * storage_connect hook (run before each IMAP connection) the plugin adds the browser's address to the
 * IMAP ID that Roundcube sends before it logs in ("preauth_ident", rcube_imap_generic::connect since
 * Roundcube 1.6). Dovecot accepts that x-originating-ip only from its login_trusted_networks, which
 * mailstack sets to exactly the webmail containers' fixed addresses.
 *
 * The browser's address is the last X-Forwarded-For entry, and only when the request comes straight
 * from a proxy listed in proxy_whitelist (mailstack's HTTPS edge, which replaces any X-Forwarded-For a
 * client sends). A request from anywhere else is attributed to its own REMOTE_ADDR.
 *
 * Part of mailstack; Roundcube's plugin API: https://github.com/roundcube/roundcubemail/wiki/Plugin-API
 */
class mailstack_client_ip extends rcube_plugin
{
    public function init()
    {
        $this->add_hook('storage_connect', [$this, 'storage_connect']);
    }

    /**
     * The address of the browser behind this request, or null when it is not a valid IP address.
     */
    public static function client_address(array $server, array $trusted_proxies)
    {
        $peer = isset($server['REMOTE_ADDR']) ? trim((string) $server['REMOTE_ADDR']) : '';
        $address = $peer;
        if (in_array($peer, $trusted_proxies, true) && !empty($server['HTTP_X_FORWARDED_FOR'])) {
            $hops = explode(',', (string) $server['HTTP_X_FORWARDED_FOR']);
            $address = trim(end($hops));
        }
        return filter_var($address, FILTER_VALIDATE_IP) !== false ? $address : null;
    }

    public function storage_connect($args)
    {
        $trusted = (array) rcube::get_instance()->config->get('proxy_whitelist', []);
        $address = self::client_address($_SERVER, array_map('strval', $trusted));
        if ($address === null) {
            return $args;
        }
        $ident = isset($args['preauth_ident']) && is_array($args['preauth_ident']) ? $args['preauth_ident'] : [];
        $ident['x-originating-ip'] = $address;
        $args['preauth_ident'] = $ident;
        return $args;
    }
}
