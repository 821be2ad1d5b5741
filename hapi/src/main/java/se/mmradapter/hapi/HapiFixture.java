package se.mmradapter.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.rest.server.RestfulServer;
import org.springframework.boot.Banner;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.SpringBootConfiguration;
import org.springframework.boot.autoconfigure.web.embedded.EmbeddedWebServerFactoryCustomizerAutoConfiguration;
import org.springframework.boot.autoconfigure.web.servlet.ServletWebServerFactoryAutoConfiguration;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Import;

/**
 * The MMR adapter's HAPI FHIR JPA server for tests and development: FHIR R4, H2 in memory,
 * rest-hook subscriptions, listening on loopback only.
 *
 * <p>{@code java -jar mmr-hapi-fixture.jar --server.port=8080} serves {@code http://127.0.0.1:8080/fhir}.
 * No Spring Boot auto-configuration runs except the embedded servlet container and its settings: every HAPI part
 * is wired explicitly here, in {@link ServerSettings}, {@link StorageConfig} and in {@link FhirServerConfig}.
 */
@SpringBootConfiguration
@Import({
    ServletWebServerFactoryAutoConfiguration.class,
    // Applies the server.tomcat.* settings (relaxed-query-chars) to the embedded Tomcat.
    EmbeddedWebServerFactoryCustomizerAutoConfiguration.class,
    ServerSettings.class,
    StorageConfig.class,
    FhirServerConfig.class,
    SubscriptionSubmitterConfig.class,
    SubscriptionProcessorConfig.class,
    SubscriptionChannelConfig.class,
    JpaBatch2Config.class,
    Batch2JobsConfig.class
})
public class HapiFixture {

    public static void main(String[] args) {
        SpringApplication application = new SpringApplication(HapiFixture.class);
        application.setBannerMode(Banner.Mode.OFF);
        application.run(args);
    }

    /** HAPI's RESTful server under {@code /fhir/*}, started with the container rather than on first request. */
    @Bean
    public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
        ServletRegistrationBean<RestfulServer> registration = new ServletRegistrationBean<>(restfulServer, "/fhir/*");
        registration.setLoadOnStartup(1);
        return registration;
    }
}
