package templates

// extractsMessages are the texts of extract retrieval, hand-over and an officer's extract page.
var extractsMessages = map[string]Msg{
	"extracts.title":         {"Mes extraits", "My extracts"},
	"extracts.handover":      {"Extraits à remettre", "Extracts to hand over"},
	"extracts.officer.title": {"Extrait", "Extract"},
	"extracts.officer.link":  {"voir l'extrait (état, révocation, ré-émission)", "see the extract (state, revocation, re-issue)"},
	"extracts.lead": {
		"Un extrait ne peut être téléchargé qu'une seule fois, avant son expiration. Il est produit au moment du téléchargement.",
		"An extract can be downloaded once only, before it expires. It is produced when you download it.",
	},
	"extracts.empty":    {"Aucun extrait pour le moment.", "No extract for now."},
	"extracts.caption":  {"Extraits remis", "Released extracts"},
	"extracts.request":  {"Demande", "Request"},
	"extracts.decision": {"Décision", "Decision"},
	"extracts.purpose":  {"Motif", "Purpose"},
	"extracts.entries":  {"Éléments", "Entries"},
	"extracts.expires":  {"Expire le", "Expires"},
	"extracts.state":    {"État", "State"},
	"extracts.action":   {"Action", "Action"},
	"extracts.digest":   {"Empreinte du manifeste", "Manifest digest"},
	"extracts.bytes":    {"octets", "bytes"},

	"extracts.purpose.care_continuity": {"Continuité des soins", "Care continuity"},
	"extracts.purpose.emergency":       {"Urgence", "Emergency"},
	"extracts.purpose.second_opinion":  {"Second avis", "Second opinion"},
	"extracts.purpose.legal_request":   {"Réquisition légale", "Legal request"},
	"extracts.purpose.other":           {"Autre", "Other"},

	"extracts.state.ready":            {"Prêt", "Ready"},
	"extracts.state.retrieved":        {"Téléchargé", "Retrieved"},
	"extracts.state.expired":          {"Expiré", "Expired"},
	"extracts.state.revoked":          {"Révoqué", "Revoked"},
	"extracts.retrieved.detail":       {"le %s par %s", "on %s by %s"},
	"extracts.holds":                  {"Contenu", "Holds"},
	"extracts.for":                    {"Pour", "For"},
	"extracts.downloaded":             {"Téléchargement lancé. Cet extrait ne peut plus être retiré une seconde fois.", "Download started. This extract cannot be retrieved a second time."},
	"extracts.revoke.confirm":         {"Révoquer cet extrait ? Le destinataire ne pourra plus le retirer. Cette action est signée et ne peut pas être annulée.", "Revoke this extract? Its retriever will no longer be able to retrieve it. This is signed and cannot be undone."},
	"extracts.revoke.reason":          {"Motif de la révocation (le demandeur le lira)", "Reason for revocation (the requester will read it)"},
	"extracts.revoke.reason.required": {"Indiquez le motif de la révocation avant de signer.", "Give the reason for revocation before signing."},

	"extracts.retriever":           {"Remis à", "Released to"},
	"extracts.retriever.requester": {"le demandeur (accès externe)", "the requester (remote access)"},
	"extracts.retriever.staff":     {"le personnel de l'établissement (console)", "hospital staff (console)"},

	"extracts.format":      {"Format", "Format"},
	"extracts.format.fhir": {"FHIR R4 (JSON, pour un logiciel)", "FHIR R4 (JSON, for software)"},
	"extracts.format.html": {"Page imprimable (HTML)", "Printable page (HTML)"},
	"extracts.once": {
		"Attention : un seul téléchargement possible. Enregistrez le fichier.",
		"Careful: one download only. Save the file.",
	},
	"extracts.retrieve": {"Télécharger l'extrait", "Download the extract"},

	"extracts.refused.title":     {"Extrait indisponible", "Extract unavailable"},
	"extracts.refused.retrieved": {"Cet extrait a déjà été téléchargé : il ne peut l'être qu'une fois.", "This extract was already downloaded: it can be downloaded once only."},
	"extracts.refused.expired":   {"Cet extrait a expiré. Déposez une nouvelle demande si nécessaire.", "This extract has expired. File a new request if needed."},
	"extracts.refused.revoked":   {"Cet extrait a été révoqué par un responsable des données.", "This extract was revoked by a data officer."},

	"extracts.delivery":            {"Remise", "Delivery"},
	"extracts.delivery.complete":   {"complète", "complete"},
	"extracts.delivery.incomplete": {"Remise interrompue : un responsable peut ré-émettre l'extrait.", "Delivery interrupted: an officer can re-issue the extract."},
	"extracts.delivery.unknown": {
		"Remise inconnue : l'extrait a été retiré mais son envoi n'a pas pu être enregistré ; une copie complète a pu être reçue. Une ré-émission demande la signature de deux responsables.",
		"Delivery unknown: the extract was claimed but what was sent could not be recorded; a complete copy may have been received. A re-issue needs two officers' signatures.",
	},
	"extracts.reissue.first_signed": {"Première signature de ré-émission par %s : un autre responsable doit signer.", "First re-issue signature by %s: another officer must sign."},
	"extracts.delivery.failed": {
		"L'extrait a été retiré mais sa production a échoué : il ne peut plus être téléchargé. Un responsable peut le ré-émettre ; contactez-le en indiquant l'identifiant de la requête.",
		"The extract was claimed but producing it failed: it can no longer be downloaded. An officer can re-issue it; contact them with the request id.",
	},
	"extracts.reissued": {"Ré-émis par la décision", "Re-issued by decision"},

	"extracts.revoke.title": {"Révoquer l'extrait", "Revoke the extract"},
	"extracts.revoke.lead": {
		"La révocation est définitive et signée avec votre clé de sécurité (code PIN demandé).",
		"Revocation is final and signed with your security key (PIN asked).",
	},
	"extracts.revoke":        {"Révoquer et signer", "Revoke and sign"},
	"extracts.reissue.title": {"Ré-émettre l'extrait", "Re-issue the extract"},
	"extracts.reissue.lead": {
		"La remise a été interrompue. Une nouvelle décision signée libère un nouvel extrait, identique, à usage unique.",
		"The delivery was interrupted. A new signed decision releases a new, identical, one-time extract.",
	},
	"extracts.reissue.lead_restore": {
		"La base a été restaurée depuis une sauvegarde où cet extrait était prêt : il a été invalidé (il a pu être retiré depuis). Une nouvelle décision signée libère un nouvel extrait, identique, à usage unique.",
		"The database was restored from a backup in which this extract was ready: it was invalidated (it may have been retrieved since). A new signed decision releases a new, identical, one-time extract.",
	},
	"extracts.reissue":         {"Ré-émettre et signer", "Re-issue and sign"},
	"extracts.sign.working":    {"Touchez votre clé de sécurité…", "Touch your security key…"},
	"extracts.sign.cancelled":  {"Signature annulée. Rien n'a changé.", "Signature cancelled. Nothing changed."},
	"extracts.sign.error":      {"La signature a échoué. Rien n'a changé.", "The signature failed. Nothing changed."},
	"extracts.sign.nowebauthn": {"Ce navigateur ne sait pas utiliser de clé de sécurité.", "This browser cannot use security keys."},
	"extracts.nav":             {"Extraits", "Extracts"},
}
