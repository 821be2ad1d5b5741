package se.mmradapter.hapi;

import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.entity.StorageSettings;
import java.util.List;
import java.util.Set;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * The behaviour the adapter meets in production: the values the hapiproject/hapi image (the
 * jpaserver-starter) applies by default, written out here because HAPI's own defaults differ.
 */
@Configuration
public class ServerSettings {

    /** The starter's search cache: the same search within a minute answers from the cached result set. */
    static final long REUSE_CACHED_SEARCH_RESULTS_MILLIS = 60_000L;

    static final int DEFAULT_PAGE_SIZE = 20;

    /** The starter sets no maximum page size (HAPI's core default is 50). */
    static final int MAX_PAGE_SIZE = Integer.MAX_VALUE;

    @Bean
    public JpaStorageSettings storageSettings() {
        JpaStorageSettings settings = new JpaStorageSettings();
        settings.setReuseCachedSearchResultsForMillis(REUSE_CACHED_SEARCH_RESULTS_MILLIS);
        settings.setExpireSearchResultsAfterMillis(60L * 60L * 1000L);
        settings.setFetchSizeDefaultMaximum(MAX_PAGE_SIZE);
        settings.setSearchPreFetchThresholds(List.of(13, 503, 2003, -1));
        // setup installs the directory with HSA-ids as logical ids (PUT Organization/SE...-...).
        settings.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ALPHANUMERIC);
        settings.setAllowContainsSearches(true);
        settings.setAllowMultipleDelete(false);
        settings.setAllowExternalReferences(false);
        settings.setDefaultSearchParamsCanBeOverridden(true);
        settings.setAutoCreatePlaceholderReferenceTargets(false);
        settings.setEnforceReferentialIntegrityOnWrite(true);
        settings.setEnforceReferentialIntegrityOnDelete(true);
        settings.setExpungeEnabled(true);
        settings.setDeleteExpungeEnabled(false);
        settings.setFilterParameterEnabled(true);
        settings.setIndexMissingFields(StorageSettings.IndexEnabledEnum.DISABLED);
        settings.setDeferIndexingForCodesystemsOfSize(100);
        settings.setInlineResourceTextBelowSize(4000);
        settings.setTreatReferencesAsLogical(Set.of(
                "http://terminology.hl7.org/*", "https://terminology.hl7.org/*",
                "http://snomed.info/*", "https://snomed.info/*",
                "http://unitsofmeasure.org/*", "https://unitsofmeasure.org/*",
                "http://loinc.org/*", "https://loinc.org/*"));
        return settings;
    }

    /** Classic rest-hook subscriptions on (the image's {@code hapi.fhir.subscription.resthook_enabled=true}). */
    @Bean
    public SubscriptionSettings subscriptionSettings() {
        SubscriptionSettings settings = new SubscriptionSettings();
        settings.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
        return settings;
    }

    @Bean
    public PartitionSettings partitionSettings() {
        return new PartitionSettings();
    }
}
